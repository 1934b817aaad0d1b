"""Exactly-once execution: the duplicate-delivery guard and stored revocations.

Why: a scheduler that crashes between publishing and recording may publish a run twice, and a
``revoke`` broadcast misses workers that are offline. So just before a run goes to the pool,
the worker claims ``mainspring:run:{id}:{attempt}`` with SET NX (value ``host|pid``) and checks
``mainspring:revoked:{id}`` in the same round trip. The first delivery wins; a second one is
acknowledged without running; a stored revocation discards the run wherever it lands.

Without Redis, a database result backend holds the same claims as rows (``sql_guard``); with
any other backend its state stands in (a best-effort check, not atomic): a run already STARTED
or finished is a duplicate, one marked REVOKED is discarded.
"""

from __future__ import annotations

import os
import threading
from enum import StrEnum
from typing import Any, Protocol

from celery import states

GUARD_KEY = "mainspring:run:{run_id}:{attempt}"
REVOKED_KEY = "mainspring:revoked:{run_id}"
TERMINATE = "terminate"
REVOKE = "revoke"
_TAKEN = frozenset({states.STARTED, states.SUCCESS, states.FAILURE})


class Verdict(StrEnum):
    RUN = "run"
    DUPLICATE = "duplicate"
    REVOKED = "revoked"


class RunStore(Protocol):
    """Claims runs and keeps revocations.

    ``claim`` guarantees that of all callers with one ``(run_id, attempt)``, at most one gets
    ``RUN`` while the claim lives (``ttl`` seconds), unless ``holder_dead`` says the holder is
    gone. A stored revocation makes every later ``claim`` return ``REVOKED``.
    """

    def claim(self, run_id: str, attempt: int, holder: str, takeover: bool) -> Verdict: ...

    def holder(self, run_id: str, attempt: int) -> str | None: ...

    def revoke(self, run_id: str, terminate: bool) -> None: ...

    def terminate_requested(self, run_id: str) -> bool: ...


class RedisRunStore:
    """Claims and revocations as Redis keys with an expiry (atomic SET NX)."""

    def __init__(self, client: Any, ttl: int) -> None:
        self._redis = client
        self._ttl = ttl

    def claim(self, run_id: str, attempt: int, holder: str, takeover: bool) -> Verdict:
        key = GUARD_KEY.format(run_id=run_id, attempt=attempt)
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(REVOKED_KEY.format(run_id=run_id))
        pipe.set(key, holder, nx=not takeover, ex=self._ttl)
        revoked, claimed = pipe.execute()
        if revoked is not None:
            return Verdict.REVOKED
        return Verdict.RUN if claimed else Verdict.DUPLICATE

    def holder(self, run_id: str, attempt: int) -> str | None:
        value = self._redis.get(GUARD_KEY.format(run_id=run_id, attempt=attempt))
        return value.decode() if isinstance(value, bytes) else value

    def revoke(self, run_id: str, terminate: bool) -> None:
        value = TERMINATE if terminate else REVOKE
        self._redis.set(REVOKED_KEY.format(run_id=run_id), value, ex=self._ttl)

    def terminate_requested(self, run_id: str) -> bool:
        value = self._redis.get(REVOKED_KEY.format(run_id=run_id))
        return value in (TERMINATE, TERMINATE.encode())


class BackendRunStore:
    """Best effort on result backends without Redis (database): reads the run's state."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def claim(self, run_id: str, attempt: int, holder: str, takeover: bool) -> Verdict:
        status = self._backend.get_task_meta(run_id).get("status")
        if status == states.REVOKED:
            return Verdict.REVOKED
        if status in _TAKEN and not takeover:
            return Verdict.DUPLICATE
        return Verdict.RUN

    def holder(self, run_id: str, attempt: int) -> str | None:
        return None

    def revoke(self, run_id: str, terminate: bool) -> None:
        self._backend.mark_as_revoked(run_id, "revoked by mainspring")

    def terminate_requested(self, run_id: str) -> bool:
        return False


_stores: dict[tuple[int, int], RunStore] = {}
_stores_lock = threading.Lock()


def run_store(app: Any) -> RunStore:
    """This process's store for ``app`` (made after fork, since Redis clients are not
    fork-safe)."""
    key = (id(app), os.getpid())
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = _make_store(app)
        return store


def _make_store(app: Any) -> RunStore:
    url = app.conf.get("mainspring_guard_url")
    if url:
        import redis

        return RedisRunStore(redis.Redis.from_url(url), int(app.conf.mainspring_guard_ttl))
    backend_url = str(app.conf.result_backend or "")
    if backend_url.startswith("db+"):
        from mainspring.worker.sql_guard import SqlRunStore, engine_for_backend

        return SqlRunStore(engine_for_backend(backend_url), int(app.conf.mainspring_guard_ttl))
    return BackendRunStore(app.backend)


def holder_id(hostname: str) -> str:
    return f"{hostname}|{os.getpid()}"


def holder_is_gone(holder: str | None, hostname: str) -> bool:
    """Whether the claim's holder was an earlier life of this very worker (same name, other
    pid that no longer exists): then its late-acked run, redelivered, may run again."""
    if not holder or "|" not in holder:
        return False
    host, _, pid = holder.rpartition("|")
    if host != hostname or not pid.isdigit() or int(pid) == os.getpid():
        return False
    import psutil

    return not psutil.pid_exists(int(pid))
