"""Remote control for the Flower worker endpoints, with Flower's answers.

Most commands go through ``services.workers`` (registry check, ``Control``, audit). The few
Flower exposes that Mainspring's ``Control`` does not (pool restart, time and rate limits,
the raw inspect replies) are added by ``FlowerControl``, a subclass using its broadcast.

Flower's answers: the worker said ok → 200 ``{"message": ...}``; it said why not → 403 with
the reason; it did not answer in time → 504 (Flower 2.x); a worker nobody has seen → 404.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from mainspring.api.flower.deps import (
    CONTROL_TIMEOUT_S,
    ERRORS,
    INSPECT_TIMEOUT_S,
    bad_request,
)
from mainspring.api.schemas import ErrorOut
from mainspring.context import AppContext
from mainspring.errors import NotFoundError, ServiceUnavailableError, ValidationError
from mainspring.services import workers as worker_service
from mainspring.services.audit import Actor, diff, record_as
from mainspring.worker.control import Control, Replies

CONTROL_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    504: {"model": ErrorOut, "description": "the worker did not answer in time"},
}

# What Flower's inspector asks each worker (``/api/workers?refresh=1``).
INSPECT_METHODS = (
    "stats",
    "active_queues",
    "registered",
    "scheduled",
    "active",
    "reserved",
    "revoked",
    "conf",
)


@dataclass(frozen=True)
class FlowerControl(Control):
    def _broadcast(
        self, command: str, hosts: list[str] | None, reply: bool = True, **arguments: Any
    ) -> Replies:
        """Arguments are checked before this is called, so a failure here is the broker's."""
        try:
            return super()._broadcast(command, hosts, reply, **arguments)
        except Exception as exc:
            raise ServiceUnavailableError(f"cannot reach the workers' broker: {exc}") from exc

    def pool_restart(self, hosts: list[str]) -> Replies:
        """Needs ``worker_pool_restarts``; otherwise the worker answers with an error."""
        return self._broadcast("pool_restart", hosts, reload=False)

    def time_limit(
        self, task: str, soft: float | None, hard: float | None, hosts: list[str]
    ) -> Replies:
        return self._broadcast("time_limit", hosts, task_name=task, soft=soft, hard=hard)

    def rate_limit(self, task: str, rate: str, hosts: list[str]) -> Replies:
        return self._broadcast("rate_limit", hosts, task_name=task, rate_limit=rate)

    def inspect_raw(self, method: str, hosts: list[str] | None) -> Replies:
        """One inspect command's replies as workers sent them, ``{hostname: reply}``."""
        return dict(getattr(self._inspect(hosts), method)() or {})


def commands(app: Any) -> FlowerControl:
    return FlowerControl(app, timeout=CONTROL_TIMEOUT_S)


def unknown_worker(name: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"Unknown worker '{name}'")


def no_reply(name: str) -> HTTPException:
    return HTTPException(status_code=504, detail=f"No response from worker '{name}'")


def registered_tasks(ctx: AppContext, name: str) -> list[str]:
    """The tasks a known worker registered; 404 for a worker the registry has not seen."""
    try:
        with ctx.session() as session:
            return list(worker_service.get_worker(session, name).registered_tasks or [])
    except NotFoundError:
        raise unknown_worker(name) from None


@contextmanager
def flower_answers(name: str, failure: str) -> Iterator[None]:
    """The service's errors as Flower answers them (404, 504, 403; a bad argument 400)."""
    try:
        yield
    except NotFoundError:
        raise unknown_worker(name) from None
    except worker_service.WorkerNoReplyError:
        raise no_reply(name) from None
    except worker_service.WorkerRefusedError as exc:
        raise HTTPException(status_code=403, detail=f"{failure}: {exc}") from None
    except ValidationError as exc:
        raise bad_request(exc.field, exc.message) from None


def _is_ok(payload: Any) -> bool:
    return "ok" in payload if isinstance(payload, dict) else payload == "ok"


def _reason(payload: Any) -> str:
    if isinstance(payload, dict) and payload.get("error"):
        return str(payload["error"])
    if isinstance(payload, str) and payload not in ("", "ok"):
        return payload
    return "Unknown reason"


def reply_message(
    replies: Replies, worker: str, failure: str, success: str | None = None
) -> dict[str, str]:
    """Flower's answer to a command sent to ``worker``: its ok message (or ``success``)."""
    payload = replies.get(worker)
    if payload is None:
        raise no_reply(worker)
    if not _is_ok(payload):
        raise HTTPException(status_code=403, detail=f"{failure}: '{_reason(payload)}'")
    if success is None:
        success = str(payload.get("ok", "")) if isinstance(payload, dict) else ""
    return {"message": success}


def worker_error(replies: Replies, worker: str) -> str | None:
    """The error a worker replied, if it replied one."""
    payload = replies.get(worker)
    return None if payload is None or _is_ok(payload) else _reason(payload)


def audit(ctx: AppContext, actor: Actor, action: str, worker: str, **values: Any) -> None:
    """Record a command the worker accepted (its own transaction, after the reply)."""
    with ctx.session() as session:
        record_as(session, actor, action, "worker", worker, diff({}, values))


async def inspect_all(app: Any, hosts: list[str] | None) -> dict[str, dict[str, Any]]:
    """Every Flower inspect method at once (each waits for replies in a thread), merged per
    worker as Flower's inspector keeps them; a method that fails is left out."""
    control = FlowerControl(app, timeout=INSPECT_TIMEOUT_S)
    answers = await asyncio.gather(
        *(run_in_threadpool(control.inspect_raw, m, hosts) for m in INSPECT_METHODS),
        return_exceptions=True,
    )
    failures = [a for a in answers if isinstance(a, BaseException)]
    if len(failures) == len(answers):
        raise ServiceUnavailableError(f"Failed to update workers: {failures[0]}")
    merged: dict[str, dict[str, Any]] = {}
    for method, replies in zip(INSPECT_METHODS, answers, strict=True):
        if isinstance(replies, BaseException):
            continue
        for host, reply in replies.items():
            if reply is not None:
                merged.setdefault(str(host), {})[method] = reply
    return merged
