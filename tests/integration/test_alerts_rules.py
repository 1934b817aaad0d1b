"""Alert rules evaluated as the recorder does, delivered to real local receivers.

A fake clock drives ``Alerting``; runs are rows as the recorder writes them. Deliveries go
over real sockets: an HTTP server, an SMTP server (aiosmtpd) and a command.
"""

from __future__ import annotations

import hashlib
import hmac
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from mainspring.alerts.config import ChannelKind, RuleKind
from mainspring.alerts.delivery import DeliveryPolicy
from mainspring.alerts.evaluate import Alerting, AlertOptions
from mainspring.alerts.store import RuleSpec, create_channel, create_rule
from mainspring.context import AppContext
from mainspring.core.states import RunState
from mainspring.db.models import Alert, AlertDelivery, Job, Lease, Run, RunLog, Worker
from mainspring.observability.probe import SCHEDULER_PREFIX
from mainspring.services.audit import Actor
from tests.integration.alert_receivers import Webhook, smtp_server, webhook_server

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
ACTOR = Actor("test")
FAST = AlertOptions(
    interval_s=1.0,
    delivery=DeliveryPolicy(base_backoff_s=1.0, max_attempts=5, allow_commands=True),
)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    # Delivery records its outcome with the service clock: make it the same fake clock.
    monkeypatch.setattr("mainspring.alerts.delivery.utcnow", clock)
    return clock


@pytest.fixture
def hook() -> Iterator[Webhook]:
    with webhook_server() as server:
        yield server


def _job(ctx: AppContext, name: str = "nightly-backup", tags: list[str] | None = None) -> int:
    with ctx.session() as s:
        job = Job(
            name=name,
            task="tasks.backup",
            queue="nobody-consumes",
            trigger_kind="cron",
            trigger={"v": 1, "cron": "0 2 * * *"},
            timezone="UTC",
            tags=tags or [],
            created_at=T0,
            updated_at=T0,
        )
        s.add(job)
        s.flush()
        return job.id


def _run(
    ctx: AppContext, run_id: str, state: RunState, at: datetime, job_id: int | None, **kw: Any
) -> None:
    values: dict[str, Any] = {
        "id": run_id,
        "job_id": job_id,
        "task": "tasks.backup",
        "options": {},
        "queue": "nobody-consumes",
        "state": state.value,
        "attempt": 0,
        "trigger": "schedule",
        "scheduled_for": at,
        "created_at": at,
        "updated_at": at,
        "log_bytes": 0,
        "log_truncated": False,
    }
    if state in (RunState.FAILURE, RunState.SUCCESS):
        values.update(
            started_at=at, finished_at=at + timedelta(seconds=1), runtime_ms=1000.0, worker="w1"
        )
    if state is RunState.FAILURE:
        values.update(exception_type="OSError", exception_message="disk full")
    values.update(kw)
    with ctx.session() as s:
        s.add(Run(**values))


def _webhook_rule(ctx: AppContext, url: str, kind: RuleKind, **kw: Any) -> int:
    with ctx.session() as s:
        channel = create_channel(
            s, ACTOR, f"hook-{kind}", ChannelKind.WEBHOOK, {"url": url, "secret": "shh"}
        )
        rule = create_rule(
            s, ACTOR, RuleSpec(name=f"rule-{kind}", kind=kind, channel_ids=[channel.id], **kw)
        )
        return rule.id


def _count(ctx: AppContext, model: Any) -> int:
    with ctx.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_ten_failures_in_a_minute_send_one_alert(
    ctx: AppContext, clock: Clock, hook: Webhook
) -> None:
    job_id = _job(ctx)
    _webhook_rule(ctx, hook.url, RuleKind.RUN_FAILED, cooldown_s=600)
    alerting = Alerting(ctx, options=FAST, clock=clock)
    for i in range(10):
        _run(ctx, f"r{i}", RunState.FAILURE, clock.advance(6), job_id)
        alerting.tick()
    assert len(hook.received) == 1
    with ctx.session() as s:
        [alert] = s.scalars(select(Alert)).all()
        assert alert.suppressed == 9
        assert alert.run_id == "r0"
    body = hook.bodies()[0]
    assert body["link"] == "/runs/r0"
    assert body["error"] == "OSError: disk full"
    assert body["subject"].startswith("[nightly-backup]")
    headers, raw = hook.received[0]
    expected = "sha256=" + hmac.new(b"shh", raw, hashlib.sha256).hexdigest()
    assert headers["X-Mainspring-Signature"] == expected


def test_failure_then_success_sends_a_recovery_alert_with_the_log_tail(
    ctx: AppContext, clock: Clock, hook: Webhook
) -> None:
    job_id = _job(ctx)
    _webhook_rule(ctx, hook.url, RuleKind.RUN_FAILED)
    with ctx.session() as s:
        channel_id = s.scalar(select(AlertDelivery.channel_id)) or 1
        create_rule(
            s, ACTOR, RuleSpec(name="back", kind=RuleKind.RECOVERED, channel_ids=[channel_id])
        )
    alerting = Alerting(ctx, options=FAST, clock=clock)
    _run(ctx, "bad", RunState.FAILURE, clock.advance(1), job_id)
    with ctx.session() as s:
        s.add(RunLog(run_id="bad", seq=0, at=clock.now, stream="log", text="copying...\nENOSPC\n"))
    alerting.tick()
    _run(ctx, "good", RunState.SUCCESS, clock.advance(60), job_id)
    alerting.tick()
    kinds = [b["kind"] for b in hook.bodies()]
    assert kinds == ["run_failed", "recovered"]
    assert "ENOSPC" in hook.bodies()[0]["log_tail"]
    assert hook.bodies()[1]["link"] == "/runs/good"


def test_rule_for_one_tag_ignores_other_jobs(ctx: AppContext, clock: Clock, hook: Webhook) -> None:
    db_job = _job(ctx, "db-backup", tags=["db"])
    web_job = _job(ctx, "web-scan", tags=["web"])
    _webhook_rule(ctx, hook.url, RuleKind.RUN_FAILED, tag="db")
    alerting = Alerting(ctx, options=FAST, clock=clock)
    _run(ctx, "w", RunState.FAILURE, clock.advance(1), web_job)
    _run(ctx, "d", RunState.FAILURE, clock.advance(1), db_job)
    alerting.tick()
    assert [b["run"]["id"] for b in hook.bodies()] == ["d"]


def test_fire_not_started_within_grace_raises_fire_missed(
    ctx: AppContext, clock: Clock, hook: Webhook
) -> None:
    job_id = _job(ctx)
    _webhook_rule(ctx, hook.url, RuleKind.FIRE_MISSED, params={"grace_s": 30})
    alerting = Alerting(ctx, options=FAST, clock=clock)
    _run(ctx, "stuck", RunState.SENT, clock.now, job_id, sent_at=clock.now)
    clock.advance(20)
    alerting.tick()
    assert hook.received == []
    clock.advance(15)
    alerting.tick()
    alerting.tick()
    [body] = hook.bodies()
    assert body["kind"] == "fire_missed"
    assert "nobody-consumes" in body["subject"]
    assert body["link"] == "/runs/stuck"


def test_stopped_scheduler_raises_scheduler_down_once(
    ctx: AppContext, clock: Clock, hook: Webhook
) -> None:
    _webhook_rule(ctx, hook.url, RuleKind.SCHEDULER_DOWN, params={"grace_s": 5})
    with ctx.session() as s:
        s.add(
            Lease(
                name=f"{SCHEDULER_PREFIX}h:1",
                holder="h:1",
                fencing_token=0,
                expires_at=T0 + timedelta(seconds=1),
            )
        )
    alerting = Alerting(ctx, options=FAST, clock=clock)
    alerting.tick()  # alive
    for _ in range(5):
        clock.advance(3)
        alerting.tick()
    assert [b["kind"] for b in hook.bodies()] == ["scheduler_down"]


def test_webhook_failing_twice_gets_the_alert_delivered_once(ctx: AppContext, clock: Clock) -> None:
    job_id = _job(ctx)
    with webhook_server(fail_first=2) as hook:
        _webhook_rule(ctx, hook.url, RuleKind.RUN_FAILED)
        alerting = Alerting(ctx, options=FAST, clock=clock)
        _run(ctx, "r", RunState.FAILURE, clock.advance(1), job_id)
        alerting.tick()  # attempt 1 fails; retry after 1 s
        clock.advance(0.5)
        alerting.tick()  # not due yet
        assert hook.attempts == 1
        clock.advance(1)
        alerting.tick()  # attempt 2 fails; retry after 2 s
        clock.advance(2.5)
        alerting.tick()  # attempt 3 succeeds
        clock.advance(10)
        alerting.tick()
        assert hook.attempts == 3
        assert len(hook.received) == 1
    with ctx.session() as s:
        [delivery] = s.scalars(select(AlertDelivery)).all()
        assert (delivery.state, delivery.attempts) == ("sent", 3)
        assert delivery.last_error == "webhook answered HTTP 500"


def test_email_and_command_channels_deliver(ctx: AppContext, clock: Clock, tmp_path: Any) -> None:
    job_id = _job(ctx)
    out = tmp_path / "hook.json"
    argv = [
        sys.executable,
        "-c",
        f"import sys; open({str(out)!r}, 'wb').write(sys.stdin.buffer.read())",
    ]
    with smtp_server() as (port, mailbox):
        with ctx.session() as s:
            mail = create_channel(
                s,
                ACTOR,
                "mail",
                ChannelKind.EMAIL,
                {
                    "host": "127.0.0.1",
                    "port": port,
                    "security": "none",
                    "from_addr": "ms@example.com",
                    "to": ["ops@example.com"],
                    "console_url": "http://console.example:8470",
                },
            )
            cmd = create_channel(s, ACTOR, "cmd", ChannelKind.COMMAND, {"argv": argv})
            spec = RuleSpec(name="fail", kind=RuleKind.RUN_FAILED, channel_ids=[mail.id, cmd.id])
            create_rule(s, ACTOR, spec)
        _run(ctx, "r", RunState.FAILURE, clock.advance(1), job_id)
        Alerting(ctx, options=FAST, clock=clock).tick()
        [(sender, rcpts, text)] = mailbox.messages
    assert (sender, rcpts) == ("ms@example.com", ["ops@example.com"])
    assert "http://console.example:8470/runs/r" in text
    assert "OSError: disk full" in text
    assert '"link": "/runs/r"' in out.read_text()


def test_only_one_recorder_evaluates(ctx: AppContext, clock: Clock, hook: Webhook) -> None:
    job_id = _job(ctx)
    _webhook_rule(ctx, hook.url, RuleKind.RUN_FAILED, cooldown_s=0)
    first = Alerting(ctx, options=FAST, clock=clock, holder="a:1")
    second = Alerting(ctx, options=FAST, clock=clock, holder="b:2")
    _run(ctx, "r", RunState.FAILURE, clock.advance(1), job_id)
    assert first.tick() == 1
    assert second.tick() == 0
    assert _count(ctx, Alert) == 1


def test_last_retry_failing_raises_retries_exhausted(
    ctx: AppContext, clock: Clock, hook: Webhook
) -> None:
    job_id = _job(ctx)
    _webhook_rule(ctx, hook.url, RuleKind.RETRIES_EXHAUSTED, cooldown_s=0)
    alerting = Alerting(ctx, options=FAST, clock=clock)
    retry = {"retry": {"retries": 2}}
    _run(ctx, "early", RunState.FAILURE, clock.advance(1), job_id, options=retry, attempt=1)
    _run(ctx, "last", RunState.FAILURE, clock.advance(1), job_id, options=retry, attempt=2)
    _run(ctx, "none", RunState.FAILURE, clock.advance(1), job_id)
    alerting.tick()
    assert [b["run"]["id"] for b in hook.bodies()] == ["last"]
    assert "after 2 retries" in hook.bodies()[0]["subject"]


def test_run_still_running_past_its_limit_alerts_once(
    ctx: AppContext, clock: Clock, hook: Webhook
) -> None:
    job_id = _job(ctx)
    _webhook_rule(ctx, hook.url, RuleKind.DURATION_EXCEEDED, params={"max_duration_s": 60})
    alerting = Alerting(ctx, options=FAST, clock=clock)
    _run(ctx, "long", RunState.STARTED, clock.now, job_id, started_at=clock.now)
    clock.advance(50)
    alerting.tick()
    assert hook.received == []
    for _ in range(3):
        clock.advance(20)
        alerting.tick()
    [body] = hook.bodies()
    assert body["subject"].endswith("still running after 60 s")


def test_worker_going_offline_alerts_once_per_outage(
    ctx: AppContext, clock: Clock, hook: Webhook
) -> None:
    _webhook_rule(ctx, hook.url, RuleKind.WORKER_OFFLINE, cooldown_s=0)
    alerting = Alerting(ctx, options=FAST, clock=clock)
    with ctx.session() as s:
        s.add(
            Worker(
                hostname="w1@db", status="offline", queues=["db"], registered_tasks=[],
                first_seen_at=T0, last_heartbeat_at=T0, updated_at=clock.advance(10),
                active=0, processed=0, software={}, capabilities={},
            )
        )  # fmt: skip
    alerting.tick()
    clock.advance(30)
    alerting.tick()
    assert [b["worker"] for b in hook.bodies()] == ["w1@db"]


def test_recorder_writing_late_raises_recorder_lag(
    ctx: AppContext, clock: Clock, hook: Webhook
) -> None:
    _webhook_rule(ctx, hook.url, RuleKind.RECORDER_LAG, params={"max_lag_s": 10})
    alerting = Alerting(ctx, options=FAST, clock=clock)
    late = clock.advance(60)
    _run(ctx, "slow", RunState.SUCCESS, late - timedelta(seconds=45), None, updated_at=late)
    alerting.tick()
    [body] = hook.bodies()
    assert body["kind"] == "recorder_lag"
    assert body["lag_s"] == pytest.approx(44.0)


def test_many_runs_written_in_one_flush_are_all_judged(
    ctx: AppContext, clock: Clock, hook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mainspring.alerts.evaluate.BATCH", 3)
    _webhook_rule(ctx, hook.url, RuleKind.RUN_FAILED, cooldown_s=0)
    alerting = Alerting(ctx, options=FAST, clock=clock)
    flushed_at = clock.advance(1)
    for i in range(7):
        _run(ctx, f"r{i}", RunState.FAILURE, flushed_at, None, task=f"tasks.t{i}")
    assert alerting.tick() == 7
    assert sorted(b["run"]["id"] for b in hook.bodies()) == [f"r{i}" for i in range(7)]
