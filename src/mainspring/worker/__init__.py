"""The Celery side: the app factory, built-in tasks and per-run log capture."""
