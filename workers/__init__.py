"""The Celery side of expq: the app, queue routing, the training task, leases and the reaper."""
