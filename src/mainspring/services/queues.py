"""Queues on the broker: which ones Mainspring knows, how many messages wait, and purging.

Known queues are the configured ones (default, worker queues, routes), those jobs send to,
and those the workers registry says are consumed (host queues included). Lengths:

- Redis (kombu's virtual transport): a queue is a list, and with priorities one list per
  priority step, named ``<queue>`` for step 0 and ``<queue><sep><step>`` for the others
  (``sep`` is ``"\\x06\\x16"``, steps ``[0, 3, 6, 9]``: kombu's ``Channel._q_for_pri``).
  All of them are read with ``LLEN`` in one pipeline through kombu's own client, so a
  ``global_keyprefix`` applies as kombu applies it. Messages taken but not acknowledged
  (``unacked``) are not counted, as in ``celery inspect`` and Flower.
- RabbitMQ: a passive ``queue.declare`` answers the ready message and consumer counts; a
  queue that does not exist closes the channel (404), so the next one gets a new channel.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mainspring.context import AppContext
from mainspring.db.models import Job, Worker
from mainspring.errors import NotFoundError, ServiceUnavailableError, ValidationError
from mainspring.services.audit import Actor, record_as
from mainspring.services.jobs import QUEUE_RE
from mainspring.settings import Settings


@dataclass(frozen=True)
class QueueLength:
    name: str
    messages: int | None
    consumers: int | None = None
    by_priority: dict[str, int] | None = None
    exists: bool = True


def check_name(name: str, field: str = "name") -> str:
    if not QUEUE_RE.fullmatch(name):
        raise ValidationError(field, "is not a queue name (letters, digits, _ . - : @)")
    return name


def known_queues(session: Session, settings: Settings) -> dict[str, list[str]]:
    """Queue names with the workers known to consume each (sorted)."""
    names: dict[str, set[str]] = {}
    configured = [settings.default_queue, *settings.worker_queues, *settings.task_routes.values()]
    for queue in configured + list(session.scalars(select(Job.queue).distinct())):
        names.setdefault(queue, set())
    for hostname, queues in session.execute(select(Worker.hostname, Worker.queues)):
        for queue in queues or []:
            names.setdefault(str(queue), set()).add(hostname)
    return {name: sorted(hosts) for name, hosts in sorted(names.items())}


@contextlib.contextmanager
def broker_channel(app: Any) -> Iterator[tuple[Any, Any]]:
    """``(connection, channel)`` on the broker, or a 503 when it cannot be reached."""
    conn = app.connection_for_write()
    try:
        try:
            conn.ensure_connection(max_retries=1, timeout=5)
            channel = conn.default_channel
        except Exception as exc:
            raise ServiceUnavailableError(f"cannot reach the broker: {exc}") from exc
        yield conn, channel
    finally:
        conn.release()


def broker_kind(conn: Any) -> str:
    """``redis``, ``amqp`` or the transport's own name."""
    return str(getattr(conn.transport, "driver_type", conn.transport_cls))


def queue_lengths(app: Any, names: list[str]) -> tuple[str, list[QueueLength]]:
    """The broker's kind and each queue's length (None where the broker cannot say)."""
    with broker_channel(app) as (conn, channel):
        kind = broker_kind(conn)
        try:
            if kind == "redis":
                return kind, _redis_lengths(channel, names)
            if kind == "amqp":
                return kind, [_amqp_length(conn, name) for name in names]
        except conn.connection_errors as exc:
            raise ServiceUnavailableError(f"the broker failed: {exc}") from exc
        return kind, [QueueLength(name, None) for name in names]


def _redis_lengths(channel: Any, names: list[str]) -> list[QueueLength]:
    steps = list(channel.priority_steps)
    with channel.client.pipeline(transaction=False) as pipe:
        for name in names:
            for step in steps:
                pipe.llen(f"{name}{channel.sep}{step}" if step else name)
        sizes = pipe.execute()
    result = []
    for i, name in enumerate(names):
        counts = [int(n or 0) for n in sizes[i * len(steps) : (i + 1) * len(steps)]]
        by_step = {str(step): n for step, n in zip(steps, counts, strict=True)}
        result.append(QueueLength(name, sum(counts), by_priority=by_step))
    return result


def _amqp_length(conn: Any, name: str) -> QueueLength:
    channel = conn.channel()
    try:
        ok = channel.queue_declare(queue=name, passive=True)
    except conn.channel_errors:
        return QueueLength(name, None, exists=False)  # 404: the channel is closed now
    with contextlib.suppress(*conn.channel_errors, *conn.connection_errors):
        channel.close()
    return QueueLength(name, int(ok.message_count), consumers=int(ok.consumer_count))


def purge_queue(ctx: AppContext, app: Any, actor: Actor, name: str, confirm: str) -> int:
    """Delete every waiting message of ``name`` (confirmed by repeating the name); audited.
    Runs whose messages are purged keep their state (SENT): they will never be received."""
    check_name(name)
    if confirm != name:
        raise ValidationError("confirm", "repeat the queue's name exactly to confirm the purge")
    with broker_channel(app) as (conn, _channel):
        channel = conn.channel()
        try:
            purged = int(channel.queue_purge(queue=name) or 0)
        except conn.channel_errors:
            raise NotFoundError(f"the broker has no queue named {name!r}") from None
        except conn.connection_errors as exc:
            raise ServiceUnavailableError(f"the broker failed: {exc}") from exc
        with contextlib.suppress(*conn.channel_errors, *conn.connection_errors):
            channel.close()
    with ctx.session() as session:
        changes = {"before": {"messages": purged}, "after": {"messages": 0}}
        record_as(session, actor, "purge", "queue", name, changes)
    return purged
