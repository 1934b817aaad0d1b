"""Task events leave the worker's main process in batches, a few times a second.

Why: Celery already buffers the main process's task events (``task-received``,
``task-started``, ``task-succeeded``...) but flushes them on the next turn of the event loop,
so a busy worker publishes about one message per task: on Redis each publish is a round trip
plus a new client object, and that was the largest share of Mainspring's per-task overhead.
Here the buffer is flushed every ``FLUSH_SECONDS`` (or when ``BUFFER_LIMIT`` events wait), as
one ``task.multi`` message that the recorder, like any Celery event consumer, reads as a list.
Events are at most ``FLUSH_SECONDS`` later; what waits is sent when the consumer stops.
"""

from __future__ import annotations

from typing import Any

from celery import bootsteps

FLUSH_SECONDS = 0.1
BUFFER_LIMIT = 100


class BatchedTaskEvents(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer step: replaces the flush-per-loop-turn of the task event buffer by a timer."""

    requires = ("celery.worker.consumer.events:Events",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        self._timer: Any = None
        super().__init__(c, **kwargs)

    def start(self, c: Any) -> None:
        dispatcher = c.event_dispatcher
        if c.hub is None or dispatcher is None or not dispatcher.buffer_group:
            return  # no event loop (solo, eventlet): Celery sends each event at once
        self._cancel()
        dispatcher.buffer_limit = BUFFER_LIMIT
        dispatcher.on_send_buffered = None
        self._timer = c.hub.call_repeatedly(FLUSH_SECONDS, self._flush, c)

    def stop(self, c: Any) -> None:
        self._cancel()
        self._flush(c)

    def shutdown(self, c: Any) -> None:
        self.stop(c)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @staticmethod
    def _flush(c: Any) -> None:
        dispatcher = c.event_dispatcher
        if dispatcher is not None:
            dispatcher.flush()
