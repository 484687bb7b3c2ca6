"""The HTTP API: a Flask app factory, one blueprint per resource, auth, gunicorn config."""
