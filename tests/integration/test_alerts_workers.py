"""Alerts and metrics with the real pieces: a scheduler, a recorder and worker processes.

The recorder runs in a thread of the test (``recording`` fixture) with its maintenance thread,
so its ``alerts`` action evaluates rules as in production; alerts go to a local webhook.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mainspring.alerts.config import ChannelKind, RuleKind
from mainspring.alerts.store import RuleSpec, create_channel, create_rule
from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role, RunState
from mainspring.db.models import Run
from mainspring.scheduler.publisher import CeleryPublisher
from mainspring.scheduler.service import Scheduler
from mainspring.services import jobs as job_service
from mainspring.services.audit import Actor
from mainspring.services.tasks import submit_task
from tests.conftest import RecordingSystem
from tests.helpers import poll
from tests.integration.alert_receivers import Webhook, webhook_server

pytestmark = [pytest.mark.celery, pytest.mark.redis]


@pytest.fixture
def hook() -> Iterator[Webhook]:
    with webhook_server() as server:
        yield server


def _rule(ctx: AppContext, url: str, kind: RuleKind, **params: float) -> None:
    with ctx.session() as s:
        channel = create_channel(s, Actor("t"), f"h-{kind}", ChannelKind.WEBHOOK, {"url": url})
        spec = RuleSpec(name=str(kind), kind=kind, channel_ids=[channel.id], params=params)
        create_rule(s, Actor("t"), spec)


def test_fire_on_a_queue_no_worker_consumes_raises_fire_missed(
    redis_url: str, recording: Callable[[str], RecordingSystem], hook: Webhook
) -> None:
    system = recording(redis_url)
    _rule(system.ctx, hook.url, RuleKind.FIRE_MISSED, grace_s=2)
    anchor = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    spec = job_service.JobSpec(
        name="orphan",
        task="tests.log_and_print",
        kwargs={"message": "x"},
        trigger={"kind": "interval", "every_ms": 3_600_000, "anchor": anchor},
        timezone="UTC",
        queue="nobody-consumes",
        max_runs=1,
    )
    with system.ctx.session() as s:
        job_service.create_job(s, spec)
    stop = threading.Event()
    scheduler = Scheduler(system.ctx, CeleryPublisher(system.app), poll_interval=0.2)
    thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    thread.start()
    try:
        system.start_recorder()
        poll(lambda: hook.received, timeout=30, what="the fire-missed alert")
    finally:
        stop.set()
        thread.join(timeout=30)
    [body] = hook.bodies()
    assert body["kind"] == "fire_missed"
    assert body["subject"].startswith("[orphan]")
    assert "nobody-consumes" in body["subject"]
    with system.ctx.session() as s:
        run = s.get(Run, body["run"]["id"])
        assert run is not None
        assert run.state == RunState.SENT.value


def test_metrics_and_failure_alert_follow_real_worker_runs(
    redis_url: str,
    recording: Callable[[str], RecordingSystem],
    hook: Webhook,
    tokens: dict[Role, str],
    data_dir: Path,
) -> None:
    system = recording(redis_url)
    _rule(system.ctx, hook.url, RuleKind.RUN_FAILED)
    system.start_recorder()
    system.start_worker()
    ok = submit_task(system.ctx, system.app, "tests.log_and_print", kwargs={"message": "m"})
    bad = submit_task(system.ctx, system.app, "tests.fail", kwargs={"message": "boom"})

    def ended() -> bool:
        with system.ctx.session() as s:
            states = {s.get(Run, r.id).state for r in (ok, bad)}  # type: ignore[union-attr]
        return states == {RunState.SUCCESS.value, RunState.FAILURE.value}

    poll(ended, timeout=60, what="both runs to end")
    poll(lambda: hook.received, timeout=30, what="the failure alert")
    [body] = hook.bodies()
    assert body["link"] == f"/runs/{bad.id}"
    assert "boom" in body["error"]

    web = create_app(system.ctx)
    web.state.celery = system.app
    with TestClient(web) as client:
        headers = {"Authorization": f"Bearer {tokens[Role.VIEWER]}"}
        text = client.get("/metrics", headers=headers).text
    assert 'mainspring_runs{queue="default",state="SUCCESS",task="tests.log_and_print"} 1.0' in text
    assert 'mainspring_runs{queue="default",state="FAILURE",task="tests.fail"} 1.0' in text
    assert 'mainspring_roles_alive{role="recorder"} 1.0' in text
    assert "mainspring_run_duration_seconds_count 2.0" in text
    assert 'mainspring_queue_length{queue="default"} 0.0' in text
    assert "mainspring_alerts_sent_total 1.0" in text


def test_queue_longer_than_the_limit_alerts_once_per_cooldown(
    redis_url: str, data_dir: Path, hook: Webhook
) -> None:
    from mainspring.alerts.evaluate import Alerting
    from mainspring.settings import Settings
    from mainspring.worker.app import make_celery

    settings = Settings(data_dir=data_dir, broker_url=redis_url, default_queue="backlog")
    ctx = AppContext.open(settings)
    app = make_celery(settings)
    try:
        _rule(ctx, hook.url, RuleKind.QUEUE_LENGTH, max_length=2)
        for i in range(3):
            app.send_task("tests.log_and_print", kwargs={"message": str(i)}, queue="backlog")
        alerting = Alerting(ctx, app)
        alerting.tick()
        alerting.tick()
    finally:
        app.close()
        ctx.close()
    [body] = hook.bodies()
    assert (body["queue"], body["length"]) == ("backlog", 3)
