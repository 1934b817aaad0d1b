"""The Flower worker and queue endpoints against real workers on Redis, with the recorder
keeping the registry: listing, live inspection, pool and consumer commands, time and rate
limits, queue lengths, shutdown; and a task's life as Flower shows it.

One cluster serves the module (starting workers takes seconds): a prefork worker (its pool
can grow and shrink) and a threads worker, both loading ``tests.tasks_for_tracking``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from mainspring.api.app import create_app
from mainspring.core.states import Role, WorkerStatus
from mainspring.db.models import AuditEntry, Worker
from mainspring.services import users as user_service
from mainspring.services.auth import create_api_token
from mainspring.services.clock import utcnow
from tests.conftest import RecordingSystem, require_service
from tests.helpers import poll

pytestmark = [pytest.mark.redis, pytest.mark.celery]


@dataclass
class Cluster:
    system: RecordingSystem
    client: TestClient
    headers: dict[Role, dict[str, str]]
    prefork: str
    threads: str

    def get(self, path: str, role: Role = Role.VIEWER) -> Any:
        return self.client.get(path, headers=self.headers[role])

    def post(self, path: str, body: bytes | None = None, **headers: str) -> Any:
        return self.client.post(
            path, content=body, headers={**self.headers[Role.OPERATOR], **headers}
        )

    def audited(self, action: str, worker: str) -> list[AuditEntry]:
        with self.system.ctx.session() as session:
            return list(session.query(AuditEntry).filter_by(action=action, object_id=worker))


def _users(system: RecordingSystem) -> dict[Role, dict[str, str]]:
    headers = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(user_service, "_hasher", PasswordHasher(time_cost=1, memory_cost=64))
        with system.ctx.session() as session:
            for role in Role:
                user = user_service.create_user(session, role.value, "correct-horse-1", role)
                secret, _ = create_api_token(session, user, "test")
                headers[role] = {"Authorization": f"Bearer {secret}"}
    return headers


def _registered(client: TestClient, headers: dict[str, str], names: list[str]) -> bool:
    """Both workers' tasks *and* queues are in the registry (inspected separately)."""
    workers = client.get("/api/workers", headers=headers).json()
    return all(
        "tests.sleep" in workers.get(name, {}).get("registered", [])
        and workers[name].get("active_queues")
        for name in names
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_service("redis")
    # Database 15: the function-scoped ``redis_url`` (1-14, flushed by every test that uses
    # it, in any pytest process on this machine) must not wipe this module's cluster.
    url = "redis://127.0.0.1:6379/15"
    redis.Redis.from_url(url).flushdb()
    tmp = tmp_path_factory.mktemp("flower-workers")
    (tmp / "data").mkdir()
    system = RecordingSystem(url, tmp / "data", tmp)
    try:
        system.start_recorder(inspect_interval=1.0)
        prefork = system.start_worker(pool="prefork", concurrency=1)
        threads = system.start_worker(pool="threads", concurrency=2)
        headers = _users(system)
        with TestClient(create_app(system.ctx)) as client:
            poll(
                lambda: _registered(client, headers[Role.VIEWER], [prefork, threads]),
                timeout=90,
                what="both workers in the registry",
            )
            yield Cluster(system, client, headers, prefork, threads)
    finally:
        survivors = system.close()
    assert survivors == [], f"worker processes outlived SIGTERM: {survivors}"


def test_workers_come_from_the_registry_in_flowers_shape(cluster: Cluster) -> None:
    workers = cluster.get("/api/workers").json()

    threads = workers[cluster.threads]
    assert {"stats", "active_queues", "registered", "timestamp"} <= set(threads)
    assert "tasks.add" in threads["registered"]
    queue_names = {q["name"] for q in threads["active_queues"]}
    assert {"default", f"host.{cluster.threads}"} <= queue_names
    assert threads["mainspring"]["status"] == "online"
    assert workers[cluster.prefork]["stats"]["pool"]["max-concurrency"] == 1


def test_status_says_which_workers_are_alive(cluster: Cluster) -> None:
    status = cluster.get("/api/workers?status=true").json()

    assert status[cluster.prefork] is True
    assert status[cluster.threads] is True


def test_refresh_asks_the_worker_itself(cluster: Cluster) -> None:
    answer = cluster.get(f"/api/workers?refresh=1&workername={cluster.threads}").json()

    assert list(answer) == [cluster.threads]
    live = answer[cluster.threads]
    assert live["stats"]["pid"] > 0
    assert {"active", "reserved", "scheduled", "conf", "revoked"} <= set(live)
    assert any(q["name"] == "default" and "exchange" in q for q in live["active_queues"])


def test_an_unknown_worker_is_a_404(cluster: Cluster) -> None:
    listed = cluster.get("/api/workers?workername=ghost@nowhere")
    commanded = cluster.post("/api/worker/pool/grow/ghost@nowhere")

    assert (listed.status_code, listed.json()) == (
        404,
        {"detail": "Unknown worker 'ghost@nowhere'"},
    )
    assert commanded.status_code == 404


def test_a_prefork_pool_grows_and_shrinks(cluster: Cluster) -> None:
    name = cluster.prefork

    def processes() -> int:
        stats = cluster.get(f"/api/workers?refresh=1&workername={name}").json()[name]["stats"]
        return len(stats["pool"]["processes"])

    grown = cluster.post(f"/api/worker/pool/grow/{name}?n=1")
    poll(lambda: processes() == 2, timeout=30, what="a second pool process")
    shrunk = cluster.post(
        f"/api/worker/pool/shrink/{name}",
        b"n=1",
        **{"Content-Type": "application/x-www-form-urlencoded"},
    )
    poll(lambda: processes() == 1, timeout=30, what="back to one pool process")

    assert grown.json() == {"message": f"Growing '{name}' worker's pool by 1"}
    assert shrunk.json() == {"message": f"Shrinking '{name}' worker's pool by 1"}
    assert len(cluster.audited("pool_grow", name)) == 1
    assert len(cluster.audited("pool_shrink", name)) == 1


def test_a_worker_that_refuses_a_command_is_flowers_403(cluster: Cluster) -> None:
    grow = cluster.post(f"/api/worker/pool/grow/{cluster.threads}")
    restart = cluster.post(f"/api/worker/pool/restart/{cluster.threads}")
    autoscale = cluster.post(f"/api/worker/pool/autoscale/{cluster.threads}?min=1&max=3")

    assert grow.status_code == 403, grow.text
    assert "Failed to grow" in grow.json()["detail"]
    assert restart.status_code == 403
    assert "Pool restarts not enabled" in restart.json()["detail"]
    assert autoscale.status_code == 403
    assert cluster.audited("pool_grow", cluster.threads) == []


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("pool/grow/{w}?n=0", "n"),
        ("pool/shrink/{w}?n=many", "n"),
        ("pool/autoscale/{w}?min=3", "max"),
        ("pool/autoscale/{w}?min=4&max=2", "min"),
        ("queue/add-consumer/{w}", "queue"),
        ("queue/cancel-consumer/{w}?queue=bad%20name", "queue"),
    ],
)
def test_a_bad_command_argument_is_a_400(cluster: Cluster, path: str, field: str) -> None:
    answer = cluster.post("/api/worker/" + path.format(w=cluster.threads))

    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"]["field"] == field


def test_a_worker_starts_and_stops_consuming_a_queue(cluster: Cluster) -> None:
    name = cluster.threads

    def consumed() -> set[str]:
        live = cluster.get(f"/api/workers?refresh=1&workername={name}").json()[name]
        return {q["name"] for q in live["active_queues"]}

    added = cluster.post(f"/api/worker/queue/add-consumer/{name}?queue=flower-extra")
    during = consumed()
    cancelled = cluster.post(f"/api/worker/queue/cancel-consumer/{name}?queue=flower-extra")

    assert added.json() == {"message": "add consumer flower-extra"}
    assert "flower-extra" in during
    assert cancelled.json() == {"message": "no longer consuming from flower-extra"}
    assert "flower-extra" not in consumed()
    assert len(cluster.audited("add_consumer", name)) == 1


def test_time_and_rate_limits_are_set_on_one_worker(cluster: Cluster) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    name = cluster.threads

    timeout = cluster.post(
        "/api/task/timeout/tests.sleep", f"soft=30&hard=100&workername={name}".encode(), **form
    )
    limited = cluster.post(f"/api/task/rate-limit/tests.sleep?workername={name}&ratelimit=100/m")
    unknown = cluster.post(f"/api/task/rate-limit/tests.nope?workername={name}&ratelimit=1")
    bad = cluster.post(f"/api/task/rate-limit/tests.sleep?workername={name}&ratelimit=fast")
    missing = cluster.post("/api/task/timeout/tests.sleep?soft=1")

    assert timeout.json() == {"message": "time limits set successfully"}
    assert limited.json() == {"message": "new rate limit set successfully"}
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "Unknown task 'tests.nope'"})
    assert bad.json()["detail"]["field"] == "ratelimit"
    assert missing.json()["detail"]["field"] == "workername"
    [entry] = cluster.audited("time_limit", name)
    assert entry.changes is not None
    assert entry.changes["after"] == {"task": "tests.sleep", "soft": 30.0, "hard": 100.0}


def test_queue_lengths_count_waiting_messages(cluster: Cluster) -> None:
    now = utcnow()
    with cluster.system.ctx.session() as session:
        session.add(
            Worker(
                hostname="parked@t",
                status=WorkerStatus.OFFLINE.value,
                queues=["parked"],
                registered_tasks=[],
                first_seen_at=now,
                updated_at=now,
            )
        )
    for _ in range(3):
        cluster.post("/api/task/async-apply/tests.sleep", b'{"args": [0], "queue": "parked"}')

    lengths = cluster.get("/api/queues/length").json()["active_queues"]

    by_name = {q["name"]: q["messages"] for q in lengths}
    assert by_name["parked"] == 3
    assert by_name["default"] == 0
    assert f"host.{cluster.threads}" in by_name


def test_apply_waits_and_info_shows_the_tasks_life(cluster: Cluster) -> None:
    applied = cluster.post("/api/task/apply/tasks.add", b'{"args": [2, 3]}')
    task_id = applied.json()["task-id"]

    def recorded() -> dict[str, Any] | None:
        info: dict[str, Any] = cluster.get(f"/api/task/info/{task_id}").json()
        return info if info["state"] == "SUCCESS" and info["runtime"] is not None else None

    info = poll(recorded, timeout=30, what="the run recorded as succeeded")
    assert applied.json() == {"task-id": task_id, "state": "SUCCESS", "result": 5}
    assert info["worker"] in (cluster.prefork, cluster.threads)
    assert info["received"] <= info["started"] <= info["succeeded"]
    assert (info["args"], info["result"]) == ("[2, 3]", "5")
    assert task_id in cluster.get("/api/tasks?taskname=tasks.add&state=SUCCESS").json()


def test_result_waits_for_a_slow_task_and_reports_failures(cluster: Cluster) -> None:
    slow = cluster.post("/api/task/async-apply/tests.sleep", b'{"args": [0.5, "late"]}').json()
    failing = cluster.post("/api/task/apply/tests.fail", b'{"args": ["boom"]}').json()

    result = cluster.get(f"/api/task/result/{slow['task-id']}?timeout=30").json()

    assert result == {"task-id": slow["task-id"], "state": "SUCCESS", "result": "late"}
    assert failing["state"] == "FAILURE"
    assert failing["result"] == "ValueError('boom')"
    assert "ValueError: boom" in failing["traceback"]


def test_revoke_with_terminate_stops_a_running_task(cluster: Cluster) -> None:
    body = f'{{"args": [60], "worker": "{cluster.prefork}"}}'.encode()
    task_id = cluster.post("/api/task/async-apply/tests.sleep", body).json()["task-id"]
    poll(
        lambda: cluster.get(f"/api/task/info/{task_id}").json()["state"] == "STARTED",
        timeout=30,
        what="the task to start",
    )

    revoked = cluster.post(f"/api/task/revoke/{task_id}?terminate=true&signal=SIGKILL")
    result = cluster.get(f"/api/task/result/{task_id}?timeout=30").json()

    assert revoked.json() == {"message": f"Revoked '{task_id}'"}
    assert result["state"] == "REVOKED"


def test_shutdown_stops_the_worker(cluster: Cluster) -> None:
    name = cluster.system.start_worker(pool="threads", concurrency=1)
    process = cluster.system.workers[name]
    poll(
        lambda: _registered(cluster.client, cluster.headers[Role.VIEWER], [name]),
        timeout=60,
        what="the new worker in the registry",
    )

    viewer = cluster.client.post(
        f"/api/worker/shutdown/{name}", headers=cluster.headers[Role.VIEWER]
    )
    answer = cluster.post(f"/api/worker/shutdown/{name}")

    assert viewer.status_code == 403
    assert answer.json() == {"message": "Shutting down!"}
    poll(lambda: process.poll() is not None, timeout=60, what="the worker to exit")
    assert cluster.system.stop_worker(name) == []
    assert len(cluster.audited("shutdown", name)) == 1
