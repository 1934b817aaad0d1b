"""Exactly-once execution: the duplicate-delivery guard and stored revocations.

Why: a scheduler that crashes between publishing and recording may publish a run twice, and a
``revoke`` broadcast misses workers that are offline. So just before a run goes to the pool,
the worker claims ``mainspring:run:{id}:{attempt}`` with SET NX (value ``host|pid``) and checks
``mainspring:revoked:{id}`` in the same round trip. The first delivery wins; a second one is
acknowledged without running; a stored revocation discards the run wherever it lands.

On Redis the check is one Lua script on a connection the store keeps (the worker's main process
runs it for every run, so it must be cheap); when the guard's Redis is also the result backend
the script records the run's STARTED state there too, in place of Celery's
``task_track_started`` write from the pool (a second round trip per run).

Without Redis, a database result backend holds the same claims as rows (``sql_guard``); with
any other backend its state stands in (a best-effort check, not atomic): a run already STARTED
or finished is a duplicate, one marked REVOKED is discarded.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from celery import states
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

GUARD_KEY = "mainspring:run:{run_id}:{attempt}"
REVOKED_KEY = "mainspring:revoked:{run_id}"
RECORDS_STARTED_SETTING = "mainspring_guard_records_started"
TERMINATE = "terminate"
REVOKE = "revoke"
_TAKEN = frozenset({states.STARTED, states.SUCCESS, states.FAILURE})


class Verdict(StrEnum):
    RUN = "run"
    DUPLICATE = "duplicate"
    REVOKED = "revoked"


@dataclass(frozen=True)
class StartedRecord:
    """The result backend's STARTED entry for a run: key, encoded meta, expiry (0: none)."""

    key: bytes | str
    value: bytes | str
    ttl: int


class RunStore(Protocol):
    """Claims runs and keeps revocations.

    ``claim`` guarantees that of all callers with one ``(run_id, attempt)``, at most one gets
    ``RUN`` while the claim lives (``ttl`` seconds), unless ``holder_dead`` says the holder is
    gone. A stored revocation makes every later ``claim`` return ``REVOKED``. A store whose
    ``records_started`` is true writes ``started`` (when given) atomically with a winning
    claim, never over a SUCCESS; the others ignore it.
    """

    records_started: bool

    def claim(
        self,
        run_id: str,
        attempt: int,
        holder: str,
        takeover: bool,
        started: StartedRecord | None = None,
    ) -> Verdict: ...

    def holder(self, run_id: str, attempt: int) -> str | None: ...

    def revoke(self, run_id: str, terminate: bool) -> None: ...

    def terminate_requested(self, run_id: str) -> bool: ...


# KEYS: revocation, claim[, result meta]; ARGV: holder, claim ttl, takeover[, meta, meta ttl].
# Returns 0 (run), 1 (duplicate) or 2 (revoked). Like Celery's own store, the STARTED meta is
# published for result listeners and never replaces a SUCCESS.
CLAIM_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 2 end
local claimed
if ARGV[3] == '1' then
  claimed = redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
else
  claimed = redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2])
end
if not claimed then return 1 end
if KEYS[3] then
  local ok, meta = pcall(cjson.decode, redis.call('GET', KEYS[3]) or 'null')
  if not (ok and type(meta) == 'table' and meta['status'] == 'SUCCESS') then
    if tonumber(ARGV[5]) > 0 then
      redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5])
    else
      redis.call('SET', KEYS[3], ARGV[4])
    end
    redis.call('PUBLISH', KEYS[3], ARGV[4])
  end
end
return 0
"""
_VERDICTS = (Verdict.RUN, Verdict.DUPLICATE, Verdict.REVOKED)


class RedisRunStore:
    """Claims and revocations as Redis keys with an expiry (atomic SET NX in a script).

    ``records_started``: the result backend lives in this same Redis, so a claim can write the
    run's STARTED meta as well.
    """

    def __init__(self, client: Any, ttl: int, records_started: bool = False) -> None:
        self._redis = client
        self._ttl = ttl
        self.records_started = records_started
        self._lock = threading.Lock()
        self._conn: Any = None
        self._sha: str | None = None

    def claim(
        self,
        run_id: str,
        attempt: int,
        holder: str,
        takeover: bool,
        started: StartedRecord | None = None,
    ) -> Verdict:
        keys: list[Any] = [
            REVOKED_KEY.format(run_id=run_id),
            GUARD_KEY.format(run_id=run_id, attempt=attempt),
        ]
        args: list[Any] = [holder, self._ttl, "1" if takeover else "0"]
        if started is not None and self.records_started:
            keys.append(started.key)
            args += [started.value, started.ttl]
        return _VERDICTS[self._run_script(keys, args)]

    def _run_script(self, keys: list[Any], args: list[Any]) -> int:
        """EVALSHA on the store's own connection: no pool checkout nor pipeline per claim.
        A command is re-sent only when it cannot have run (unknown script, failed send)."""
        with self._lock:
            for _ in range(3):
                if self._sha is None:
                    self._sha = self._redis.script_load(CLAIM_SCRIPT)
                if self._conn is None:
                    self._conn = self._redis.connection_pool.make_connection()
                try:
                    self._drop_if_closed()
                    self._conn.send_command("EVALSHA", self._sha, len(keys), *keys, *args)
                except (OSError, RedisConnectionError, RedisTimeoutError):
                    self._conn.disconnect()
                    continue
                try:
                    return int(self._conn.read_response())
                except NoScriptError:
                    self._sha = None  # the server lost its scripts (restart, SCRIPT FLUSH)
                except BaseException:
                    self._conn.disconnect()
                    raise
            raise RedisConnectionError("run guard: cannot reach Redis")

    def _drop_if_closed(self) -> None:
        """No reply is pending between claims: a readable socket means the server closed it
        (restart, timeout), so reconnect before sending rather than lose a claim's reply."""
        try:
            closed = self._conn.can_read(timeout=0)
        except (OSError, RedisConnectionError, RedisTimeoutError):
            closed = True
        if closed:
            self._conn.disconnect()

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

    records_started = False

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def claim(
        self,
        run_id: str,
        attempt: int,
        holder: str,
        takeover: bool,
        started: StartedRecord | None = None,
    ) -> Verdict:
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

        return RedisRunStore(
            redis.Redis.from_url(url),
            int(app.conf.mainspring_guard_ttl),
            records_started=bool(app.conf.get(RECORDS_STARTED_SETTING)),
        )
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
