"""The migrations produce exactly the models' schema on every supported database."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mainspring.db.engine import make_engine
from mainspring.db.migrate import current_revision, head_revision, upgrade
from mainspring.db.models import Base


def test_migrations_match_the_models(database_url):
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
        assert diff == []
        assert current_revision(engine) == head_revision(engine)
        upgrade(engine)  # a second upgrade is a no-op
        assert current_revision(engine) == head_revision(engine)
    finally:
        engine.dispose()
