"""Broadcast to every live worker of a queue: three workers, one of them stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from mainspring.context import AppContext
from mainspring.core.states import RunState, WorkerStatus
from mainspring.db.models import Worker
from mainspring.services.clock import utcnow
from mainspring.services.tasks import TaskOptions, submit_broadcast
from mainspring.settings import Settings
from mainspring.worker.app import make_celery
from mainspring.worker.routing import host_queue
from tests.conftest import WorkerPool

pytestmark = [pytest.mark.celery]  # on Redis and on RabbitMQ (the broker_url fixture)


def _register(ctx: AppContext, host: str, status: WorkerStatus, queues: list[str]) -> None:
    """What the recorder keeps in ``workers`` from heartbeats and inspection."""
    now = utcnow()
    with ctx.session() as session:
        session.merge(
            Worker(
                hostname=host,
                status=status.value,
                queues=queues,
                registered_tasks=[],
                first_seen_at=now,
                last_heartbeat_at=now,
                updated_at=now,
                active=0,
                processed=0,
                software={},
                capabilities={},
            )
        )


def test_broadcast_runs_once_per_live_worker_and_skips_the_offline_one(
    broker_url: str, data_dir: Path, worker_pool: WorkerPool
) -> None:
    env = {"MAINSPRING_DATA_DIR": str(data_dir), "MAINSPRING_BROKER_URL": broker_url}
    hosts = [
        worker_pool.start(env, "-P", "threads", "-c", "1", "-Q", "scan", name=f"{n}@seg")
        for n in "abc"
    ]
    settings = Settings(data_dir=data_dir, broker_url=broker_url)
    ctx = AppContext.open(settings)
    app = make_celery(settings)
    try:
        for host in hosts:
            _register(ctx, host, WorkerStatus.ONLINE, ["scan", host_queue(host)])
        assert worker_pool.stop(hosts[2]) == []
        _register(ctx, hosts[2], WorkerStatus.OFFLINE, ["scan", host_queue(hosts[2])])
        _register(ctx, "elsewhere@x", WorkerStatus.OFFLINE, ["other"])

        sent = submit_broadcast(
            ctx,
            app,
            "mainspring.echo",
            kwargs={"message": "scan"},
            options=TaskOptions(queue="scan"),
        )

        live = [c for c in sent.children if c.state == RunState.SENT.value]
        assert sorted(c.queue or "" for c in live) == [host_queue(h) for h in hosts[:2]]
        assert [(c.worker, c.state) for c in sent.skipped] == [(hosts[2], "SKIPPED")]
        assert "offline" in (sent.skipped[0].exception_message or "")
        assert all(c.parent_id == sent.parent.id for c in sent.children)
        assert sent.parent.options["targets"] == 2
        for child in live:
            assert app.AsyncResult(child.id).get(timeout=30) == "scan"
            ran_on = app.backend.get_task_meta(child.id)["worker"]
            assert host_queue(ran_on) == child.queue
    finally:
        app.close()
        ctx.close()
