"""Pure domain logic: states, triggers, policies. No I/O, no SQLAlchemy, FastAPI or Celery."""
