"""Waking schedulers when jobs or held runs change, so that an edit applies within 100 ms.

Senders call ``request_wakeup`` inside the transaction that changes a job. On PostgreSQL this
is ``pg_notify``, delivered by the database only if and when the transaction commits. Elsewhere
the session is flagged, and a sessionmaker with ``attach_broker_wakeup`` publishes on a Redis
pub/sub channel of the broker after the commit. Schedulers listen with ``WakeupListener``; a
lost notification costs at most one fallback poll.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger("mainspring.scheduler.wakeup")

CHANNEL = "mainspring_jobs"
_FLAG = "mainspring_wakeup"


def request_wakeup(session: Session) -> None:
    """Wake every scheduler once the current transaction commits (never before, never on
    rollback)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})
    else:
        session.info[_FLAG] = True


def is_redis(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("redis://", "rediss://"))


def attach_broker_wakeup(sessions: sessionmaker[Session], broker_url: str | None) -> None:
    """Publish flagged commits of ``sessions`` on the broker's pub/sub (Redis brokers only)."""
    if not is_redis(broker_url):
        return
    import redis

    client = redis.Redis.from_url(str(broker_url), socket_connect_timeout=1, socket_timeout=1)

    def after_commit(session: Session) -> None:
        if session.info.pop(_FLAG, False):
            try:
                client.publish(CHANNEL, b"")
            except redis.RedisError:
                logger.warning("could not publish a scheduler wake-up; the poll will catch up")

    def after_rollback(session: Session) -> None:
        session.info.pop(_FLAG, None)

    event.listen(sessions, "after_commit", after_commit)
    event.listen(sessions, "after_rollback", after_rollback)


class WakeupListener:
    """A daemon thread that sets ``wake`` on each notification (PostgreSQL LISTEN, else Redis
    SUBSCRIBE on the broker; neither: nothing, the scheduler polls)."""

    def __init__(self, engine: Engine, broker_url: str | None, wake: threading.Event) -> None:
        self._engine = engine
        self._broker_url = broker_url
        self._wake = wake
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()

    @property
    def kind(self) -> str:
        if self._engine.dialect.name == "postgresql":
            return "postgresql"
        return "redis" if is_redis(self._broker_url) else "poll"

    def start(self) -> None:
        if self.kind == "poll":
            self.ready.set()
            return
        self._thread = threading.Thread(target=self._run, name="ms-wakeup", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.kind == "postgresql":
                    self._listen_postgres()
                else:
                    self._listen_redis()
            except Exception:
                logger.warning("wake-up channel lost; reconnecting", exc_info=True)
                self._wake.set()  # something may have changed meanwhile
                self._stop.wait(1.0)

    def _listen_postgres(self) -> None:
        import psycopg

        url = self._engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self.ready.set()
            while not self._stop.is_set():
                for _ in conn.notifies(timeout=0.5, stop_after=1):
                    self._wake.set()

    def _listen_redis(self) -> None:
        import redis

        client: Any = redis.Redis.from_url(str(self._broker_url))
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(CHANNEL)
            self.ready.set()
            while not self._stop.is_set():
                if pubsub.get_message(timeout=0.5) is not None:
                    self._wake.set()
        finally:
            with contextlib.suppress(Exception):
                pubsub.close()
            client.close()
