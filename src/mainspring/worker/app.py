"""The Celery app, configured from Mainspring settings. Built by a factory, never at import."""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.entity import Queue

from mainspring.settings import Settings
from mainspring.worker.tracking import install_tracking

BUILTIN_TASK_MODULES = ["mainspring.worker.builtin"]


def make_celery(settings: Settings, include: list[str] | None = None) -> Celery:
    """A Celery app on Mainspring's broker and result backend, sending every event the
    recorder needs (task-sent included, so that any client's tasks are recorded)."""
    app = Celery("mainspring", set_as_current=False)
    app.conf.update(_celery_config(settings, include or []))
    install_tracking(app)
    return app


def _celery_config(settings: Settings, include: list[str]) -> dict[str, Any]:
    return {
        "broker_url": settings.resolved_broker_url,
        "result_backend": settings.resolved_result_backend,
        "include": BUILTIN_TASK_MODULES + include,
        "task_default_queue": "default",
        "task_queues": [Queue(q) for q in settings.worker_queues],
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_extended": True,
        "result_expires": 7 * 24 * 3600,
        "task_track_started": True,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": 12 * 3600},
        "timezone": "UTC",
        "enable_utc": True,
        "mainspring_allow_shell": settings.worker_allow_shell,
    }
