"""The Celery app, configured from Mainspring settings. Built by a factory, never at import.

Every task on it (built-in or from the user's modules) derives from ``MainspringTask``, which
brings the duplicate-delivery guard, stored revocations and header-driven retries.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.entity import Queue

from mainspring.settings import Settings
from mainspring.worker.eventbatch import BatchedTaskEvents
from mainspring.worker.guard import RECORDS_STARTED_SETTING
from mainspring.worker.priority import PriorityAMQP
from mainspring.worker.routing import celery_routes
from mainspring.worker.task import MainspringTask
from mainspring.worker.tracking import install_tracking

BUILTIN_TASK_MODULES = ["mainspring.worker.builtin", "mainspring.worker.workflow_task"]


def make_celery(settings: Settings, include: list[str] | None = None) -> Celery:
    """A Celery app on Mainspring's broker and result backend, sending every event the
    recorder needs (task-sent included, so that any client's tasks are recorded)."""
    app = Celery("mainspring", set_as_current=False, task_cls=MainspringTask, amqp=PriorityAMQP)
    app.conf.update(_celery_config(settings, include or []))
    app.steps["consumer"].add(BatchedTaskEvents)
    install_tracking(app)
    return app


def _celery_config(settings: Settings, include: list[str]) -> dict[str, Any]:
    queues = dict.fromkeys([settings.default_queue, *settings.worker_queues])
    modules = dict.fromkeys(BUILTIN_TASK_MODULES + settings.worker_include + include)
    # The guard's claim could store STARTED when the result backend is its Redis (one round
    # trip in the main process instead of a backend write from the pool per run), but with it
    # a run revoked while it waited in a threads pool ran anyway
    # (tests/integration/test_recorder_states.py): Celery's own write stays until understood.
    claim_records_started = False
    return {
        "broker_url": settings.resolved_broker_url,
        "result_backend": settings.resolved_result_backend,
        "include": list(modules),
        "task_default_queue": settings.default_queue,
        "task_queues": [Queue(q) for q in queues],
        "task_routes": celery_routes(settings.task_routes),
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_extended": True,
        "result_expires": 7 * 24 * 3600,
        "task_track_started": not claim_records_started,
        "task_send_sent_event": True,
        "task_acks_late": settings.worker_acks_late,
        "task_reject_on_worker_lost": settings.worker_acks_late,
        "worker_send_task_events": True,
        "worker_hijack_root_logger": False,
        "worker_prefetch_multiplier": settings.worker_prefetch_multiplier,
        "worker_max_tasks_per_child": settings.worker_max_tasks_per_child,
        "worker_max_memory_per_child": settings.worker_max_memory_per_child,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": _transport_options(settings.broker_visibility_timeout_s),
        "task_queue_max_priority": settings.queue_max_priority,
        "timezone": "UTC",
        "enable_utc": True,
        "mainspring_allow_shell": settings.worker_allow_shell,
        "mainspring_shell_allow": list(settings.worker_shell_allow),
        "mainspring_guard_url": settings.resolved_guard_url,
        "mainspring_guard_ttl": settings.guard_ttl_s,
        RECORDS_STARTED_SETTING: claim_records_started,
        "mainspring_log_cap_bytes": settings.run_log_cap_bytes,
    }


def _transport_options(visibility_timeout_s: int) -> dict[str, Any]:
    """Redis: unacknowledged (late-ack) messages of a dead worker come back after the
    visibility timeout; scan for them every few seconds (kombu's default is ~100 s)."""
    return {
        "visibility_timeout": visibility_timeout_s,
        "unacked_restore_interval": min(10, max(1, visibility_timeout_s // 3)),
        "unacked_restore_throttle": 1,
    }
