"""The consumer step that flushes the main process's task events on a timer, not per loop turn."""

from __future__ import annotations

from typing import Any

from celery.events.dispatcher import EventDispatcher

from mainspring.worker.eventbatch import BUFFER_LIMIT, FLUSH_SECONDS, BatchedTaskEvents


class FakeHub:
    def __init__(self) -> None:
        self.repeating: list[tuple[float, Any, tuple[Any, ...]]] = []

    def call_repeatedly(self, delay: float, callback: Any, *args: Any) -> Any:
        self.repeating.append((delay, callback, args))
        return FakeTimer()


class FakeTimer:
    canceled = False

    def cancel(self) -> None:
        self.canceled = True


class FakeConsumer:
    def __init__(self, hub: FakeHub | None, dispatcher: Any) -> None:
        self.hub = hub
        self.event_dispatcher = dispatcher


def _dispatcher(sent: list[Any]) -> EventDispatcher:
    """A real dispatcher, buffering the task group as the worker's does, publishing to a list."""
    dispatcher = EventDispatcher(
        connection=None,
        hostname="w@h",
        enabled=False,
        buffer_group=["task"],
        on_send_buffered=lambda: sent.append("flush now"),
    )
    dispatcher.enabled = True
    dispatcher._publish = lambda event, producer, routing_key, **_: sent.append(  # type: ignore[method-assign]
        (routing_key, [e["type"] for e in event])
    )
    return dispatcher


def test_task_events_wait_for_the_timer_and_leave_as_one_message() -> None:
    sent: list[Any] = []
    hub, dispatcher = FakeHub(), _dispatcher(sent)
    consumer = FakeConsumer(hub, dispatcher)
    step = BatchedTaskEvents(consumer)
    step.start(consumer)
    assert dispatcher.buffer_limit == BUFFER_LIMIT
    [(delay, flush, args)] = hub.repeating
    assert delay == FLUSH_SECONDS
    for kind in ("task-received", "task-started", "task-succeeded"):
        dispatcher.send(kind, uuid="r1")
    assert sent == []  # no flush per event any more
    flush(*args)
    assert sent == [("task.multi", ["task-received", "task-started", "task-succeeded"])]


def test_a_full_buffer_is_sent_without_waiting_for_the_timer() -> None:
    sent: list[Any] = []
    consumer = FakeConsumer(FakeHub(), _dispatcher(sent))
    BatchedTaskEvents(consumer).start(consumer)
    for n in range(BUFFER_LIMIT):
        consumer.event_dispatcher.send("task-received", uuid=f"r{n}")
    assert len(sent) == 1
    assert len(sent[0][1]) == BUFFER_LIMIT


def test_stopping_cancels_the_timer_and_sends_what_waits() -> None:
    sent: list[Any] = []
    hub = FakeHub()
    consumer = FakeConsumer(hub, _dispatcher(sent))
    step = BatchedTaskEvents(consumer)
    step.start(consumer)
    timer = step._timer
    consumer.event_dispatcher.send("task-succeeded", uuid="r1")
    step.stop(consumer)
    assert timer.canceled
    assert sent == [("task.multi", ["task-succeeded"])]


def test_without_an_event_loop_celery_keeps_its_own_behaviour() -> None:
    sent: list[Any] = []
    dispatcher = _dispatcher(sent)
    consumer = FakeConsumer(None, dispatcher)
    BatchedTaskEvents(consumer).start(consumer)
    dispatcher.send("task-received", uuid="r1")
    assert sent == ["flush now"]
