"""One meaning of priority on every broker: 0 lowest … 9 highest, as in AMQP.

kombu's Redis transport polls lower numbers first (0 is its highest), so Mainspring's
publishers invert the number there; RabbitMQ takes it as is (its queues must be declared with
``x-max-priority``: setting ``queue_max_priority``). Plain Celery clients keep their broker's
native meaning.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from celery.app.amqp import AMQP

MAX_PRIORITY = 9
REDIS_SCHEMES = ("redis://", "rediss://", "redis+socket://", "sentinel://")


def is_redis_url(url: str) -> bool:
    return url.startswith(REDIS_SCHEMES)


def broker_priority(priority: int, broker_url: str) -> int:
    """The number to put on the wire for a Mainspring priority on this broker."""
    if is_redis_url(broker_url):
        return MAX_PRIORITY - min(max(priority, 0), MAX_PRIORITY)
    return priority


class PriorityAMQP(AMQP):  # type: ignore[misc]
    """Celery's AMQP helper whose task sender translates ``priority`` for the broker, so
    every ``send_task`` through Mainspring's app means the same thing on Redis and RabbitMQ."""

    @cached_property
    def send_task_message(self) -> Any:
        send = self._create_task_sender()
        if not is_redis_url(str(self.app.conf.broker_url or "")):
            return send

        def send_translated(producer: Any, name: str, message: Any, **options: Any) -> Any:
            if options.get("priority") is not None:
                options["priority"] = broker_priority(int(options["priority"]), "redis://")
            return send(producer, name, message, **options)

        return send_translated
