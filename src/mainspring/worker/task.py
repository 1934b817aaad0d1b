"""The base class of every task a Mainspring worker runs (built-in or the user's own).

Two hooks, both pool-independent:

- ``GuardedRequest.revoked`` runs in the worker's main process just before a run goes to the
  pool: the duplicate-delivery guard and stored revocations (``worker.guard``) decide there, so a
  discarded duplicate never sends ``task-started`` nor touches the result backend. Where the
  guard shares the result backend's Redis, the winning claim also stores the STARTED state.
- ``MainspringTask.__call__`` applies the retry policy a run carries in its
  ``mainspring_retry`` header (exponential backoff with full jitter), so retries work for any
  task without decorating it.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import Task, states
from celery.app.task import Context, get_actual_ignore_result
from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded
from celery.worker.request import Request
from celery.worker.state import reserved_requests, task_ready
from pydantic import BaseModel, Field, ValidationError

from mainspring.worker.guard import (
    RunStore,
    StartedRecord,
    Verdict,
    holder_id,
    holder_is_gone,
    run_store,
)

logger = logging.getLogger("mainspring.worker")

RETRY_HEADER = "mainspring_retry"


class RetryPolicy(BaseModel):
    """How often and how patiently a failed run is tried again."""

    retries: int = Field(default=0, ge=0, le=100, description="extra attempts after a failure")
    backoff: float = Field(default=1.0, gt=0, le=3600, description="first delay, seconds")
    backoff_max: float = Field(default=600.0, gt=0, le=86400, description="delay cap, seconds")
    jitter: bool = Field(default=True, description="randomise each delay in [delay/2, delay]")

    def delay(self, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1``: backoff * 2**attempt, capped; with jitter a
        random value in [half, all] of it, so retries of many runs do not arrive together."""
        delay = min(self.backoff_max, self.backoff * 2.0**attempt)
        if self.jitter:
            delay = delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - not for secrets
        return delay


class TaskRefusedError(Exception):
    """The run can never succeed as given (bad parameters, not allowed here): no retry."""


class GuardedRequest(Request):  # type: ignore[misc]
    """A Celery request that consults the guard once before it executes."""

    _mainspring_checked = False

    def revoked(self) -> bool:
        if super().revoked():
            return True
        if self._mainspring_checked or (self.expires and self not in reserved_requests):
            # Celery also asks on receipt when the run has an expiry; the claim waits until
            # the run is about to execute (reserved), or a prefetched run would hold it
            # while it waits, and lose it if the worker died before starting it.
            return False
        self._mainspring_checked = True
        verdict = self._guard_verdict()
        if verdict is Verdict.REVOKED:
            logger.info("discarding run %s: revoked (stored revocation)", self.id)
            self._announce_revoked("revoked", False, None, False)
            return True
        if verdict is Verdict.DUPLICATE:
            logger.warning(
                "run %s attempt %s already claimed; duplicate acked", self.id, self._attempt
            )
            task_ready(self)
            self.acknowledge()
            self._already_revoked = True
            return True
        return False

    @property
    def _attempt(self) -> int:
        return int(self._request_dict.get("retries") or 0)

    def _guard_verdict(self) -> Verdict:
        try:
            store = run_store(self._app)
            started = self._started_record() if store.records_started else None
            holder = holder_id(self.hostname)
            verdict = store.claim(self.id, self._attempt, holder, False, started)
            if verdict is Verdict.DUPLICATE and self._holder_lost(store):
                verdict = store.claim(self.id, self._attempt, holder, True, started)
        except Exception:
            logger.exception("run guard unavailable; running %s unguarded", self.id)
            return Verdict.RUN
        return verdict

    def _started_record(self) -> StartedRecord | None:
        """The result backend entry Celery's ``task_track_started`` would write from the pool
        (same meta, ``result_extended`` fields included; the pool pid is not known yet)."""
        try:
            context = Context(self._request_dict)
            if get_actual_ignore_result(self.task, context):
                return None
            backend = self.task.backend
            result = {"hostname": self.hostname}
            meta = backend._get_result_meta(result, states.STARTED, None, context)
            meta["task_id"] = self.id
            key = backend.get_key_for_task(self.id)
            return StartedRecord(key, backend.encode(meta), int(backend.expires or 0))
        except Exception:  # e.g. arguments the backend cannot encode: guard the run anyway
            logger.warning("run %s: STARTED not recorded", self.id, exc_info=True)
            return None

    def _holder_lost(self, store: RunStore) -> bool:
        """Whether a late-acknowledged run claimed before may run again: the broker
        redelivered it (its holder died or gave it back unacknowledged) or the holder was an
        earlier life of this worker. Early-acked runs are never run twice."""
        if not self.task.acks_late:
            return False
        if (self.delivery_info or {}).get("redelivered"):
            return True
        return holder_is_gone(store.holder(self.id, self._attempt), self.hostname)


class MainspringTask(Task):  # type: ignore[misc]
    """Base task: guarded requests and header-driven retries."""

    Request = GuardedRequest

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.request.called_directly:
            return super().__call__(*args, **kwargs)
        try:
            return self.run(*args, **kwargs)
        except (Retry, Ignore, Reject, TaskRefusedError, SoftTimeLimitExceeded):
            raise
        except Exception as exc:
            policy = _retry_policy(self.request)
            attempt = int(self.request.retries or 0)
            if policy is None or attempt >= policy.retries:
                raise
            delay = policy.delay(attempt)
            logger.info(
                "run %s failed (%s); retry %d in %.1f s", self.request.id, exc, attempt + 1, delay
            )
            raise self.retry(exc=exc, countdown=delay, max_retries=policy.retries) from exc


def _retry_policy(request: Any) -> RetryPolicy | None:
    raw = getattr(request, RETRY_HEADER, None)
    if raw is None and isinstance(request.headers, dict):
        raw = request.headers.get(RETRY_HEADER)
    if not raw:
        return None
    try:
        return RetryPolicy.model_validate(raw)
    except ValidationError:
        logger.warning("ignoring malformed %s header on run %s", RETRY_HEADER, request.id)
        return None
