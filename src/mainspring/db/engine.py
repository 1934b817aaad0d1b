"""Engine and session factories; one engine per process, built from settings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mainspring.errors import ConfigError, ServiceUnavailableError

_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}


def normalize_url(url: str) -> str:
    """Pick the drivers Mainspring ships with when the URL names none."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"database URL {mask_url(url)!r} is not valid; "
            "use e.g. postgresql://user@host/db, mysql://root@host/db or sqlite:///path.db"
        ) from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver:
        parsed = parsed.set(drivername=driver)
    if parsed.get_backend_name() not in ("sqlite", "postgresql", "mysql"):
        raise ConfigError(
            f"database {parsed.get_backend_name()!r} is not supported; "
            "use SQLite, PostgreSQL or MySQL/MariaDB"
        )
    return parsed.render_as_string(hide_password=False)


def mask_url(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the per-database settings Mainspring relies on."""
    url = normalize_url(url)
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    if backend == "mysql":
        kwargs.setdefault("isolation_level", "READ COMMITTED")
        kwargs.setdefault("connect_args", {"charset": "utf8mb4"})
    try:
        return create_engine(url, pool_pre_ping=True, **kwargs)
    except NoSuchModuleError as exc:
        raise ConfigError(f"database URL {mask_url(url)!r}: {exc}") from None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy, not pysqlite, decide when a transaction begins.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    # Take the write lock at BEGIN: a read-then-write transaction then never fails to upgrade.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def check_connection(engine: Engine) -> None:
    """Fail with one clear line when the database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise ServiceUnavailableError(
            f"cannot reach database {mask_url(str(engine.url))}: {reason}; "
            "check MAINSPRING_DATABASE_URL"
        ) from None
