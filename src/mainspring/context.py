"""What every role holds while it runs: settings, the database engine and a session factory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mainspring.db.engine import check_connection, make_engine, session_factory
from mainspring.db.migrate import upgrade
from mainspring.errors import ConfigError
from mainspring.scheduler.wakeup import attach_broker_wakeup
from mainspring.settings import Settings, ensure_data_dir


def _broker_or_none(settings: Settings) -> str | None:
    """The broker, if one is known: job changes wake schedulers through its pub/sub."""
    try:
        return settings.resolved_broker_url
    except ConfigError:
        return None


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def open(cls, settings: Settings, migrate: bool = True) -> AppContext:
        """Connect to the database (failing with one clear line) and bring its schema up to date."""
        if settings.database_url is None:
            ensure_data_dir(settings.data_dir)
        engine = make_engine(settings.resolved_database_url)
        check_connection(engine)
        if migrate:
            upgrade(engine)
        sessions = session_factory(engine)
        attach_broker_wakeup(sessions, _broker_or_none(settings))
        return cls(settings=settings, engine=engine, sessions=sessions)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self.sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()
