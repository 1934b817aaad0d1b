"""Workers: the registry the recorder keeps, who is live now, and audited remote control.

Reads come from the ``workers`` table (kept by the recorder from heartbeats and inspection),
so a worker is known once the recorder has seen it. Commands go through Celery's broadcast
mailbox (``worker.control.Control``) to that one worker: no reply within the timeout is a
``WorkerNoReplyError`` (504), a reply carrying an error (autoscale on a worker started
without autoscaling, say) a ``WorkerRefusedError`` (409). A command that changes a worker is
audited once the worker has accepted it; the transaction of the audit entry is opened after
the reply, so no database lock is held while waiting for a worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mainspring.context import AppContext
from mainspring.core.states import WorkerStatus
from mainspring.db.models import Worker
from mainspring.errors import ConflictError, NotFoundError, ServiceUnavailableError, ValidationError
from mainspring.services.audit import Actor, record_as
from mainspring.worker.control import Control, Replies
from mainspring.worker.routing import check_queue_name


class WorkerNoReplyError(ServiceUnavailableError):
    """The worker did not answer a command in time (offline, overloaded or gone)."""


class WorkerRefusedError(ConflictError):
    """The worker answered that it cannot do what was asked."""


# --- the registry -------------------------------------------------------------------------


def list_workers(session: Session, status: str | None = None) -> list[Worker]:
    """Workers by host name; ``status`` is ``online`` or ``offline``."""
    stmt = select(Worker).order_by(Worker.hostname)
    if status is not None:
        try:
            stmt = stmt.where(Worker.status == WorkerStatus(status.lower()).value)
        except ValueError:
            raise ValidationError("status", "must be online or offline") from None
    return list(session.scalars(stmt))


def get_worker(session: Session, hostname: str) -> Worker:
    worker = session.get(Worker, hostname)
    if worker is None:
        raise NotFoundError(f"no worker named {hostname!r} has been seen")
    return worker


def known_tasks(session: Session) -> dict[str, list[str]]:
    """Task names the workers have registered, each with the hosts that have it."""
    hosts: dict[str, list[str]] = {}
    rows = session.execute(select(Worker.hostname, Worker.registered_tasks)).all()
    for hostname, names in sorted(rows):
        for name in names or []:
            hosts.setdefault(str(name), []).append(hostname)
    return dict(sorted(hosts.items()))


# --- who is live (broadcasts) ---------------------------------------------------------------


def live_queues(app: Any, timeout: float = 1.0) -> dict[str, set[str]]:
    """Queues each worker that answers within ``timeout`` is consuming right now."""
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    return {host: {str(q.get("name")) for q in queues or []} for host, queues in replies.items()}


def broadcast_plan(
    session: Any, queue: str, live: dict[str, set[str]]
) -> tuple[list[str], list[tuple[str, str]]]:
    """Who gets a copy of a broadcast on ``queue``: the live workers consuming it (sorted), and
    ``(host, reason)`` for known workers of the queue that are offline or did not answer."""
    targets = sorted(host for host, queues in live.items() if queue in queues)
    return targets, _absent_workers(session, queue, set(live))


def _absent_workers(session: Any, queue: str, live: set[str]) -> list[tuple[str, str]]:
    rows = session.scalars(select(Worker).where(Worker.hostname.not_in(live or {""}))).all()
    absent = []
    for worker in rows:
        if queue not in (worker.queues or []):
            continue
        seen = _fmt(worker.last_heartbeat_at)
        if worker.status == WorkerStatus.OFFLINE.value:
            absent.append((worker.hostname, f"worker offline (last heartbeat {seen})"))
        else:
            absent.append((worker.hostname, f"worker did not answer (last heartbeat {seen})"))
    return sorted(absent)


def _fmt(at: datetime | None) -> str:
    return at.isoformat(timespec="seconds") if at else "never"


# --- remote control -------------------------------------------------------------------------


def _require_known(ctx: AppContext, hostname: str) -> Worker:
    with ctx.session() as session:
        return get_worker(session, hostname)


def _answer(hostname: str, replies: Replies, timeout: float) -> Any:
    """The worker's own answer, or why there is none."""
    if hostname not in replies:
        raise WorkerNoReplyError(
            f"worker {hostname} did not reply within {timeout:g} s: it may be offline, "
            "busy or unreachable; check its status and try again"
        )
    answer = replies[hostname]
    if isinstance(answer, dict) and "error" in answer:
        raise WorkerRefusedError(f"worker {hostname} refused: {answer['error']}")
    if isinstance(answer, dict) and "ok" in answer:
        return answer["ok"]
    return answer


def ping(ctx: AppContext, app: Any, hostname: str, timeout: float) -> tuple[str, float]:
    """The worker's reply to a ping and the round trip in milliseconds."""
    _require_known(ctx, hostname)
    started = time.monotonic()
    replies = Control(app, timeout).ping([hostname])
    elapsed_ms = (time.monotonic() - started) * 1000
    return str(_answer(hostname, replies, timeout)), elapsed_ms


def inspect_runs(ctx: AppContext, app: Any, hostname: str, timeout: float) -> dict[str, Any]:
    """What the worker holds now: runs executing, reserved, and waiting for an ETA."""
    _require_known(ctx, hostname)
    control, hosts = Control(app, timeout), [hostname]
    active = _answer(hostname, control.active(hosts), timeout)
    reserved = control.reserved(hosts).get(hostname, [])
    scheduled = control.scheduled(hosts).get(hostname, [])
    return {"active": active or [], "reserved": reserved or [], "scheduled": scheduled or []}


Command = Callable[[Control, list[str]], Replies]


def _command(action: str, arguments: dict[str, Any]) -> Command:
    """The ``Control`` call for ``action``, with its arguments checked first."""
    if action in ("pool_grow", "pool_shrink"):
        n = int(arguments["n"])
        if n < 1:
            raise ValidationError("n", "must be at least 1")
        if action == "pool_grow":
            return lambda c, h: c.pool_grow(n, h)
        return lambda c, h: c.pool_shrink(n, h)
    if action == "autoscale":
        high, low = int(arguments["max"]), int(arguments["min"])
        if not 0 <= low <= high:
            raise ValidationError("min", "must be between 0 and max")
        return lambda c, h: c.autoscale(high, low, h)
    if action in ("add_consumer", "cancel_consumer"):
        try:
            queue = check_queue_name(str(arguments["queue"]))
        except ValueError as exc:
            raise ValidationError("queue", str(exc)) from None
        if action == "add_consumer":
            return lambda c, h: c.add_consumer(queue, h)
        return lambda c, h: c.cancel_consumer(queue, h)
    raise ValueError(f"unknown worker command {action!r}")


def control_worker(
    ctx: AppContext,
    app: Any,
    actor: Actor,
    hostname: str,
    action: str,
    arguments: dict[str, Any],
    timeout: float,
) -> str:
    """Send one command (``pool_grow``, ``pool_shrink``, ``autoscale``, ``add_consumer``,
    ``cancel_consumer``) to one worker; audit it and return the worker's answer."""
    command = _command(action, arguments)
    _require_known(ctx, hostname)
    answer = str(_answer(hostname, command(Control(app, timeout), [hostname]), timeout))
    with ctx.session() as session:
        changes: dict[str, Any] = {"before": {}, "after": {**arguments, "reply": answer}}
        worker = session.get(Worker, hostname)
        if worker is not None and action in ("add_consumer", "cancel_consumer"):
            changes = _record_queues(worker, action, str(arguments["queue"]), answer)
        record_as(session, actor, action, "worker", hostname, changes)
    return answer


def _record_queues(worker: Worker, action: str, queue: str, answer: str) -> dict[str, Any]:
    """Keep the registry's queue list right at once (the recorder's next inspection agrees)."""
    before = list(worker.queues or [])
    after = [q for q in before if q != queue]
    if action == "add_consumer":
        after = sorted({*before, queue})
    worker.queues = after
    return {"before": {"queues": before}, "after": {"queues": after, "reply": answer}}


def shutdown(ctx: AppContext, app: Any, actor: Actor, hostname: str, timeout: float) -> None:
    """Warm shutdown of a worker that answers a ping (running tasks finish first). Celery
    sends no reply to ``shutdown``, so the ping is what tells a live worker from a gone one."""
    control = Control(app, timeout)
    _require_known(ctx, hostname)
    _answer(hostname, control.ping([hostname]), timeout)
    control.shutdown([hostname])
    with ctx.session() as session:
        record_as(session, actor, "shutdown", "worker", hostname, {"before": {}, "after": {}})
