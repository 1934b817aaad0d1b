"""The data layer: SQLAlchemy 2 models, engine factory, Alembic migrations and stores."""
