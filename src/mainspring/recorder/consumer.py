"""Reading Celery events off the broker with as little work per event as possible.

Celery's ``EventReceiver`` decodes each message through Kombu's serializer registry, keeps a
Lamport clock and dispatches through handler lookups: about two thirds of the recorder's time.
This is a plain Kombu consumer on the same durable queue (declared by ``EventReceiver``, so a
queue left by an older recorder matches), decoding JSON bodies with ``json.loads`` and only
correcting the sender's UTC offset as Celery does.

On RabbitMQ messages are acknowledged in bulk once their batch is committed (``prefetch_count``
bounds what is in flight, so a writer that falls behind slows the consumer instead of filling
memory); an event that was received but not yet written when the recorder stops is delivered
again. Redis delivers events by pub/sub, which has no acknowledgement, so there it is off.
"""

from __future__ import annotations

import json
import logging
import queue
from collections.abc import Callable
from typing import Any

from celery.utils.time import utcoffset
from kombu.message import Message
from kombu.messaging import Consumer

logger = logging.getLogger("mainspring.recorder")

JSON_TYPES = frozenset({"application/json", "json"})


class EventStream:
    """The recorder's queue on the celeryev exchange, consumed event by event."""

    def __init__(
        self,
        app: Any,
        conn: Any,
        node_id: str,
        queue_ttl: float,
        prefetch: int,
        on_events: Callable[[list[dict[str, Any]], Message | None], None],
    ) -> None:
        receiver = app.events.Receiver(
            conn,
            node_id=node_id,
            queue_durable=True,
            queue_exclusive=False,
            queue_ttl=queue_ttl,
            queue_expires=queue_ttl,
        )
        self.acks = conn.transport.driver_type == "amqp"
        self._conn = conn
        self._on_events = on_events
        self._here = utcoffset()
        self._to_ack: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._consumer = Consumer(
            conn.default_channel,
            queues=[receiver.queue],
            on_message=self._on_message,
            no_ack=not self.acks,
            prefetch_count=prefetch if self.acks else None,
            accept=["json"],
        )

    def __enter__(self) -> EventStream:
        self._consumer.consume()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._consumer.cancel()
        except Exception:  # the connection is gone already; nothing to cancel
            logger.debug("could not cancel the event consumer", exc_info=True)

    def drain(self, timeout: float) -> None:
        """Deliver what has arrived (or wait up to ``timeout`` for something), then send the
        acknowledgements of committed batches."""
        try:
            self._conn.drain_events(timeout=timeout)
        except TimeoutError:  # socket.timeout is an alias
            self._here = utcoffset()  # quiet moment: follow a DST change
        self.send_acks()

    def acknowledge(self, message: Message) -> None:
        """Called from any thread; the ack itself goes out on the consuming thread."""
        self._to_ack.put(message)

    def send_acks(self) -> None:
        while True:
            try:
                message = self._to_ack.get_nowait()
            except queue.Empty:
                return
            if message.channel is self._consumer.channel:  # not from a closed connection
                message.ack(multiple=True)

    def _on_message(self, message: Message) -> None:
        try:
            if message.content_type in JSON_TYPES:
                body = json.loads(message.body)
            else:
                body = message.decode()  # other serializers, checked against ``accept``
        except Exception:
            logger.warning("dropped an undecodable event message", exc_info=True)
            body = []
        events = body if isinstance(body, list) else [body]  # Celery >= 4 may send lists
        events = [event for event in events if isinstance(event, dict)]
        for event in events:
            self._localize(event)
        self._on_events(events, message if self.acks else None)

    def _localize(self, event: dict[str, Any]) -> None:
        """Celery's correction of a sender in another UTC offset (``adjust_timestamp``)."""
        offset, ts = event.get("utcoffset"), event.get("timestamp")
        if offset is not None and isinstance(ts, int | float) and offset != self._here:
            event["timestamp"] = ts - (offset - self._here) * 3600
