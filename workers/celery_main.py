"""Entry module for the plain ``celery`` command (``celery -A workers.celery_main worker``):
builds the app from ``ELYSIUM_*``. Nothing in Elysium imports it."""

from elysium.settings import Settings
from workers.celery_app import make_celery

app = make_celery(Settings.from_env())
