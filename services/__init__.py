"""The use cases, one module per resource: each records the desired state, its job and its
audit record in one transaction, then sends the job's message.

The API views, the control tasks, beat's workflows and the ``elysium`` command all call
these; none of them writes jobs or audit records itself. Nothing here imports Flask, Celery
workers or the command line.
"""
