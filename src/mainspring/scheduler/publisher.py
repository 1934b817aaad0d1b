"""Publishing claimed runs as Celery task messages (id = run id), built before they are due.

``prepare`` does all the work a message needs (protocol-2 body and headers, options,
serialisation and, on Redis, the exact ``LPUSH`` kombu would send, packed as bytes) while the
run waits for its instant; ``send`` then hands a whole burst to the broker in one write (one
``LPUSH`` per queue) or, on other brokers, through one producer kept open.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from itertools import groupby
from typing import Any, Protocol

from kombu.serialization import dumps

from mainspring.scheduler.firing import DueRun
from mainspring.services.tasks import TaskOptions, message_options
from mainspring.worker.priority import broker_priority

logger = logging.getLogger("mainspring.scheduler")

_OPTION_KEYS = frozenset(TaskOptions.model_fields) - {"queue", "worker"}
_CREATE_KEYS = ("soft_time_limit", "time_limit", "parent_id", "root_id")


class Publisher(Protocol):
    """Hands runs to the broker.

    ``prepare`` is pure CPU work (no I/O), done ahead of the due instant; its result is opaque
    and only given back to ``send``. ``send`` returns once the broker holds every message of
    the burst, or raises: then some may have been sent, and the runs stay claimed so that they
    are published again (the worker guard, keyed on the run id, drops a second delivery).
    """

    def prepare(self, run: DueRun) -> Any: ...

    def send(self, prepared: Sequence[Any]) -> None: ...


class Revoker(Protocol):
    """Stops a run that may be queued or running (overlap policy ``replace``)."""

    def revoke(self, run_id: str) -> None: ...


def headers_of(run: DueRun) -> dict[str, Any]:
    """What every task receives about its fire, whatever its arguments."""
    return {
        "mainspring_job_id": run.job_id,
        "mainspring_scheduled_for": run.due.isoformat(),
        "mainspring_window_start": run.window_start.isoformat() if run.window_start else None,
        "mainspring_window_end": run.window_end.isoformat() if run.window_end else None,
    }


def task_options(run: DueRun) -> TaskOptions:
    """The run's execution options (retry, limits, expiry, priority), as submissions have."""
    return TaskOptions.model_validate({k: v for k, v in run.options.items() if k in _OPTION_KEYS})


@dataclass(frozen=True)
class Message:
    """One task message, serialised; ``commands`` are its final Redis commands (if Redis)."""

    run_id: str
    queue: str
    body: bytes
    content_type: str
    content_encoding: str
    headers: dict[str, Any]
    properties: dict[str, Any]
    commands: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    push: tuple[bytes, bytes] | None = None  # (key, value) as RESP bulk strings, if one LPUSH


class _Capture:
    """Collects the Redis commands kombu's Redis channel would run for one publish (its
    ``_publish_batch`` protocol), without sending them."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, tuple[Any, ...]]] = []

    def add(self, name: str, *args: Any) -> None:
        self.commands.append((name, args))


class CeleryPublisher:
    """Builds Celery protocol-2 messages with the run's options and publishes bursts on one
    broker channel held for the process's life: no pool round trip and no ``task-sent`` event
    per message (the scheduler records SENT itself). A broken connection is replaced once and
    the burst retried."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._producer: Any = None
        self._declared: set[str] = set()
        self._lock = threading.Lock()  # prepare (claiming thread) and send (publishing thread)

    def prepare(self, run: DueRun) -> Message:
        headers, extra = message_options(task_options(run), run.parent_id)
        create = {k: extra[k] for k in _CREATE_KEYS if k in extra}
        if "expires" in extra:  # counted from the due instant, not from now
            create["expires"] = run.due + timedelta(seconds=extra["expires"])
        task = self._app.amqp.create_task_message(
            run.run_id, run.task, run.args, run.kwargs, **create
        )
        content_type, content_encoding, body = dumps(task.body, serializer="json")
        properties = {**task.properties, "delivery_mode": 2}
        if "priority" in extra:
            broker = str(self._app.conf.broker_url or "")
            properties["priority"] = broker_priority(extra["priority"], broker)
        message = Message(
            run_id=run.run_id,
            queue=run.queue,
            body=body if isinstance(body, bytes) else str(body).encode(),
            content_type=content_type,
            content_encoding=content_encoding,
            headers={**task.headers, **headers, **headers_of(run)},
            properties=properties,
        )
        return self._with_redis_commands(message)

    def _with_redis_commands(self, message: Message) -> Message:
        channel = self._channel()
        self._declare(channel, {message.queue})  # ahead of the instant, like the message
        if not _is_redis(channel):
            return message
        capture = _Capture()
        raw = channel.prepare_message(
            message.body,
            message.properties.get("priority"),
            message.content_type,
            message.content_encoding,
            dict(message.headers),
            {**message.properties, "delivery_info": {}},
        )
        channel.basic_publish(raw, exchange="", routing_key=message.queue, _publish_batch=capture)
        commands = tuple(capture.commands)
        push = None
        if len(commands) == 1 and commands[0][0] == "lpush" and len(commands[0][1]) == 2:
            push = (_bulk(commands[0][1][0]), _bulk(commands[0][1][1]))
        return replace(message, commands=commands, push=push)

    def send(self, prepared: Sequence[Any]) -> None:
        messages: list[Message] = list(prepared)
        if not messages:
            return
        try:
            self._send(messages)
        except Exception:
            logger.warning("publish failed; reconnecting to the broker", exc_info=True)
            self.close()
            self._send(messages)

    def _send(self, messages: list[Message]) -> None:
        channel = self._channel()
        self._declare(channel, {m.queue for m in messages})
        if _is_redis(channel) and all(m.push for m in messages):
            _redis_pushes(channel.client, messages)
            return
        if _is_redis(channel) and all(m.commands for m in messages):
            _redis_burst(channel, messages)
            return
        for m in messages:
            self._producer.publish(
                m.body,
                exchange="",
                routing_key=m.queue,
                headers=m.headers,
                content_type=m.content_type,
                content_encoding=m.content_encoding,
                **m.properties,
            )

    def _channel(self) -> Any:
        with self._lock:
            if self._producer is None:
                self._producer = self._app.producer_pool.acquire(block=True)
                self._declared.clear()
                if _is_redis(self._producer.channel):
                    self._producer.channel.client.ping()  # connect now, not on the first burst
            return self._producer.channel

    def _declare(self, channel: Any, queues: set[str]) -> None:
        from kombu.entity import Queue

        with self._lock:
            missing = queues - self._declared
        for name in missing:
            Queue(name).bind(channel).declare()
            with self._lock:
                self._declared.add(name)

    def revoke(self, run_id: str) -> None:
        self._app.control.revoke(run_id, terminate=True)

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                try:
                    self._producer.release()
                finally:
                    self._producer = None


def _is_redis(channel: Any) -> bool:
    """A kombu Redis channel that supports batched publishing (kombu ≥ 5.6)."""
    return hasattr(channel, "create_publish_batch") and hasattr(channel, "client")


def _bulk(value: Any) -> bytes:
    data = value if isinstance(value, bytes) else str(value).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _redis_pushes(client: Any, messages: list[Message]) -> None:
    """The common burst (every message one LPUSH) written as bytes packed at claim time: one
    ``LPUSH key v1 v2 …`` per run of messages to the same queue, in one write on a pooled
    connection. redis-py would pack the same ~1 KB per message again at the instant (~1 ms
    per 100 messages), which is most of a burst's lateness."""
    parts: list[bytes] = []
    commands = 0
    for key, group in groupby(messages, key=lambda m: m.push[0] if m.push else b""):
        values = [m.push[1] for m in group if m.push]
        parts.append(b"*%d\r\n$5\r\nLPUSH\r\n%s" % (len(values) + 2, key))
        parts.extend(values)
        commands += 1
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        connection.send_packed_command([b"".join(parts)])
        for _ in range(commands):
            connection.read_response()  # raises on an error reply
    except BaseException:
        connection.disconnect()  # replies may be left unread: never reuse it
        raise
    finally:
        pool.release(connection)


def _redis_burst(channel: Any, messages: list[Message]) -> None:
    """Every message in one pipeline: consecutive LPUSHes to one key merged into one command
    (kombu consumes from the other end, so the order is kept)."""
    merged: list[tuple[str, list[Any]]] = []
    for m in messages:
        for name, args in m.commands:
            last = merged[-1] if merged else None
            if (
                name == "lpush"
                and last is not None
                and last[0] == "lpush"
                and last[1][0] == args[0]
            ):
                last[1].extend(args[1:])
            else:
                merged.append((name, list(args)))
    with channel.client.pipeline(transaction=False) as pipe:
        for name, values in merged:
            getattr(pipe, name)(*values)
        pipe.execute()
