"""Changes apply at once: a commit wakes a sleeping scheduler through PostgreSQL NOTIFY or the
Redis broker's pub/sub, far sooner than its fallback poll."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mainspring.client import Mainspring
from mainspring.context import AppContext
from mainspring.core.states import RunState
from mainspring.db.models import Run
from mainspring.scheduler.firing import DueRun
from mainspring.scheduler.service import Scheduler
from mainspring.settings import Settings
from tests.helpers import poll

pytestmark = pytest.mark.serial  # timing-sensitive: runs alone


class TimedPublisher:
    def __init__(self) -> None:
        self.published: list[tuple[DueRun, datetime]] = []
        self.lock = threading.Lock()

    def prepare(self, run: DueRun) -> DueRun:
        return run

    def send(self, prepared: Sequence[DueRun]) -> None:
        with self.lock:
            at = datetime.now(UTC)
            self.published += [(run, at) for run in prepared]


@pytest.fixture(params=["postgres", "sqlite+redis"])
def wake_settings(request: pytest.FixtureRequest, data_dir: Path) -> Settings:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        return Settings(data_dir=data_dir, database_url=url, secret_key="k")
    broker = request.getfixturevalue("redis_url")
    return Settings(data_dir=data_dir, broker_url=broker, secret_key="k")


@pytest.fixture
def running(wake_settings: Settings) -> Iterator[tuple[Mainspring, TimedPublisher]]:
    """A scheduler thread whose fallback poll (10 s) is far slower than the 100 ms target."""
    ctx = AppContext.open(wake_settings)
    publisher = TimedPublisher()
    scheduler = Scheduler(ctx, publisher, poll_interval=10.0)
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    thread.start()
    client = Mainspring(AppContext.open(wake_settings))
    # Let the scheduler finish its first claim and fall asleep on the long poll.
    poll(lambda: scheduler._next_claim is not None, timeout=10, what="first claim")
    try:
        yield client, publisher
    finally:
        stop.set()
        scheduler.wake.set()
        thread.join(timeout=15)
        client.close()
        ctx.close()
        assert not thread.is_alive()


def _wait_listening(client: Mainspring, publisher: TimedPublisher) -> None:
    """Notifications sent before the listener subscribed are lost: retry a probe until one
    wakes the scheduler (then the channel is known to be up)."""
    client.upsert_job("probe", "t.probe", manual=True, timezone="UTC")

    def probe_published() -> bool:
        client.run_now("probe")
        return bool(poll(lambda: publisher.published, timeout=0.5, interval=0.01))

    for _ in range(20):
        try:
            if probe_published():
                return
        except AssertionError:
            continue
    raise AssertionError("the scheduler never woke up")


@pytest.mark.redis
def test_run_now_is_published_within_100_ms_of_the_commit(running) -> None:
    client, publisher = running
    _wait_listening(client, publisher)
    publisher.published.clear()
    client.upsert_job("report", "t.report", manual=True, timezone="UTC")
    committed = datetime.now(UTC)
    run_id = client.run_now("report", kwargs={"x": 1})
    ((run, at),) = poll(lambda: list(publisher.published), timeout=5, interval=0.005)
    assert run.run_id == run_id
    assert run.kwargs == {"x": 1}
    assert at - committed < timedelta(milliseconds=100)


@pytest.mark.redis
def test_edited_schedule_fires_on_its_new_time_within_100_ms(running) -> None:
    client, publisher = running
    _wait_listening(client, publisher)
    publisher.published.clear()
    client.upsert_job("edited", "t.e", cron="0 0 1 1 *", timezone="UTC")
    due = datetime.now(UTC) + timedelta(milliseconds=60)
    committed = datetime.now(UTC)
    client.upsert_job("edited", "t.e", at=due, timezone="UTC")
    ((run, at),) = poll(lambda: list(publisher.published), timeout=5, interval=0.005)
    assert run.due == due
    assert due <= at < committed + timedelta(milliseconds=160)


@pytest.fixture
def two_db_settings(database_url: str, data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, database_url=database_url, secret_key="k")


def test_two_schedulers_on_each_database_never_publish_a_fire_twice(two_db_settings) -> None:
    contexts = [AppContext.open(two_db_settings), AppContext.open(two_db_settings)]
    client = Mainspring(contexts[0])
    anchor = datetime.now(UTC) + timedelta(milliseconds=300)
    for i in range(20):
        client.upsert_job(
            f"job-{i}", "t.x", trigger={"kind": "interval", "every_ms": 100,
                                         "anchor": anchor.isoformat()}, timezone="UTC",
        )  # fmt: skip
    publisher = TimedPublisher()
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=Scheduler(c, publisher, poll_interval=0.05, listen=False).run,
            args=(stop,),
            daemon=True,
        )
        for c in contexts
    ]
    for thread in threads:
        thread.start()
    stop.wait(3.0)
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    fires = Counter((run.job_id, run.due) for run, _ in publisher.published)
    with contexts[0].session() as session:
        stored = session.scalar(select(func.count(Run.id)))
        unsent = session.scalar(
            select(func.count(Run.id)).where(
                Run.state == RunState.SCHEDULED.value, Run.claimed_by.is_not(None)
            )
        )
    for c in contexts:
        c.close()
    assert sum(fires.values()) > 200  # 20 jobs x 10 fires/s for ~2.7 s
    assert max(fires.values()) == 1
    assert stored >= sum(fires.values())
    assert unsent == 0  # whatever was claimed and not published was released on stop
