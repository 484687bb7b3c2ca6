"""The `elysium` command: the top of the import graph, composing the API, workers and beat."""
