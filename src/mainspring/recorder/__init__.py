"""The recorder: the one writer of run history, fed by Celery events."""
