"""Task history through the Flower API, answered from the runs table: ``/api/task/info``,
``/api/tasks`` (filters, sort, offset, search) and ``/api/task/types`` in Flower's shapes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mainspring.api.app import create_app
from mainspring.api.flower.history import TaskQuery, children_of, list_runs, parse_search
from mainspring.api.flower.shapes import run_states_for
from mainspring.context import AppContext
from mainspring.core.states import Role, RunState, WorkerStatus
from mainspring.db.models import Run, Worker
from mainspring.settings import Settings

BASE = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai

Headers = dict[Role | None, dict[str, str]]


def _run(run_id: str, minutes: int, state: RunState, **values: Any) -> Run:
    at = BASE + timedelta(minutes=minutes)
    final = state.is_final
    fields: dict[str, Any] = {
        "id": run_id,
        "task": "tasks.add",
        "args": [minutes, "two"],
        "kwargs": {"k": f"v{minutes}"},
        "options": {},
        "queue": "default",
        "worker": "w1@host",
        "state": state.value,
        "attempt": 0,
        "trigger": "api",
        "created_at": at,
        "sent_at": at,
        "received_at": at + timedelta(milliseconds=10),
        "started_at": at + timedelta(milliseconds=20),
        "finished_at": at + timedelta(seconds=2) if final else None,
        "updated_at": at,
        "runtime_ms": 1980.0 if final else None,
        "result": {"sum": minutes} if state is RunState.SUCCESS else None,
        "log_bytes": 0,
        "log_truncated": False,
    }
    fields.update(values)
    return Run(**fields)


@pytest.fixture
def client(ctx: AppContext, tokens: dict[Role, str]) -> Iterator[TestClient]:
    """Runs a minute apart (r0 oldest): tasks, workers and states vary; r5 has two children."""
    with ctx.session() as session:
        session.add_all(
            [
                _run("r0", 0, RunState.SUCCESS),
                _run(
                    "r1",
                    1,
                    RunState.FAILURE,
                    exception_type="ValueError",
                    exception_message="boom",
                    traceback="Traceback...\n",
                ),
                _run("r2", 2, RunState.LOST, task="tasks.reduce", worker="w2@host"),
                _run("r3", 3, RunState.SENT, received_at=None, started_at=None, worker=None),
                _run(
                    "r4",
                    4,
                    RunState.SCHEDULED,
                    task="reports.build",
                    sent_at=None,
                    received_at=None,
                    started_at=None,
                    worker=None,
                    scheduled_for=BASE + timedelta(hours=1),
                    options={"priority": 3},
                ),
                _run("r5", 5, RunState.SUCCESS, options={"broadcast": True}),
                _run("r5a", 6, RunState.SUCCESS, parent_id="r5", root_id="r5"),
                _run("r5b", 7, RunState.SKIPPED, parent_id="r5", root_id="r5"),
            ]
        )
        session.add(
            Worker(
                hostname="w1@host",
                status=WorkerStatus.ONLINE.value,
                queues=["default"],
                registered_tasks=["tasks.add", "tasks.mul"],
                first_seen_at=BASE,
                updated_at=BASE,
            )
        )
    with TestClient(create_app(ctx)) as client:
        yield client


def _ids(client: TestClient, auth: Headers, query: str = "") -> list[str]:
    answer = client.get(f"/api/tasks{query}", headers=auth[Role.VIEWER])
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def test_task_info_has_flowers_keys_and_renderings(client: TestClient, auth: Headers) -> None:
    info = client.get("/api/task/info/r0", headers=auth[Role.VIEWER]).json()

    flower_keys = {
        "uuid", "name", "state", "received", "sent", "started", "rejected", "succeeded",
        "failed", "retried", "revoked", "args", "kwargs", "eta", "expires", "retries",
        "worker", "result", "exception", "timestamp", "runtime", "traceback", "exchange",
        "routing_key", "clock", "client", "root", "root_id", "parent", "parent_id", "children",
    }  # fmt: skip
    assert flower_keys <= set(info)
    assert info["task-id"] == info["uuid"] == "r0"
    assert (info["name"], info["state"], info["worker"]) == ("tasks.add", "SUCCESS", "w1@host")
    assert (info["args"], info["kwargs"], info["result"]) == (
        "[0, 'two']",
        "{'k': 'v0'}",
        "{'sum': 0}",
    )
    assert info["received"] == pytest.approx(BASE.timestamp() + 0.01)
    assert info["succeeded"] == info["timestamp"] == pytest.approx(BASE.timestamp() + 2)
    assert info["runtime"] == pytest.approx(1.98)
    assert (info["failed"], info["exception"], info["retries"]) == (None, None, 0)
    assert info["mainspring"]["state"] == "SUCCESS"


def test_task_info_maps_mainspring_states_to_celerys(client: TestClient, auth: Headers) -> None:
    def info(run_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = client.get(
            f"/api/task/info/{run_id}", headers=auth[Role.VIEWER]
        ).json()
        return answer

    failed, lost, held = info("r1"), info("r2"), info("r4")
    assert (failed["state"], failed["exception"]) == ("FAILURE", "ValueError('boom')")
    assert failed["traceback"] == "Traceback...\n"
    assert failed["failed"] == pytest.approx(BASE.timestamp() + 60 + 2)
    assert (lost["state"], lost["mainspring"]["state"]) == ("FAILURE", "LOST")
    assert held["state"] == "PENDING"
    assert held["eta"] == (BASE + timedelta(hours=1)).isoformat()
    assert info("r5b")["state"] == "REVOKED"


def test_task_info_lists_children_and_lineage(client: TestClient, auth: Headers) -> None:
    parent = client.get("/api/task/info/r5", headers=auth[Role.VIEWER]).json()
    child = client.get("/api/task/info/r5a", headers=auth[Role.VIEWER]).json()

    assert parent["children"] == ["r5a", "r5b"]
    assert (child["parent_id"], child["root_id"], child["parent"]) == ("r5", "r5", "r5")


def test_task_info_of_an_unknown_id_is_a_404(client: TestClient, auth: Headers) -> None:
    answer = client.get("/api/task/info/nope", headers=auth[Role.VIEWER])

    assert (answer.status_code, answer.json()) == (404, {"detail": "Unknown task 'nope'"})


def test_tasks_are_newest_first_keyed_by_id(client: TestClient, auth: Headers) -> None:
    answer = client.get("/api/tasks", headers=auth[Role.VIEWER]).json()

    assert list(answer) == ["r5b", "r5a", "r5", "r4", "r3", "r2", "r1", "r0"]
    assert answer["r3"]["state"] == "PENDING"
    assert answer["r2"]["worker"] == "w2@host"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?limit=2", ["r5b", "r5a"]),
        ("?limit=2&offset=2", ["r5", "r4"]),
        ("?offset=-3&limit=1", ["r5b"]),
        ("?limit=0&taskname=tasks.reduce", ["r2"]),
        ("?taskname=All&workername=w2@host", ["r2"]),
        ("?state=FAILURE", ["r2", "r1"]),
        ("?state=LOST", ["r2"]),
        ("?state=PENDING", ["r4", "r3"]),
        ("?state=revoked", ["r5b"]),
        ("?state=All&limit=1", ["r5b"]),
        ("?sort_by=name&limit=2", ["r4", "r5b"]),
        ("?sort_by=-received&limit=3", ["r5b", "r5a", "r5"]),
        ("?sort_by=received&limit=3", ["r4", "r3", "r0"]),
        ("?received_start=2026-03-01 12:03&received_end=2026-03-01 12:06", ["r5"]),
        ("?received_start=2026-03-01T04:05:30Z", ["r5b", "r5a"]),
        ("?search=args:4", ["r4"]),
        ("?search=kwargs:k=v1", ["r1"]),
        ("?search=result:sum", ["r5a", "r5", "r0"]),
        ("?search=state:LOST", ["r2"]),
        ("?search=reports", ["r4"]),
        ('?search="boom"', ["r1"]),
        ("?search=100%", []),
    ],
)
def test_tasks_filters_sort_and_search_as_flower(
    client: TestClient, auth: Headers, query: str, expected: list[str]
) -> None:
    assert _ids(client, auth, query) == expected


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?limit=ten", "limit"),
        ("?limit=10001", "limit"),
        ("?offset=x", "offset"),
        ("?offset=99999999999999999999", "offset"),
        ("?sort_by=uuid", "sort_by"),
        ("?state=SLEEPING", "state"),
        ("?received_start=yesterday", "received_start"),
        ("?received_end=2026-13-01 00:00", "received_end"),
        ("?received_start=0001-01-01 00:00", "received_start"),
    ],
)
def test_a_bad_tasks_argument_is_a_400_naming_it(
    client: TestClient, auth: Headers, query: str, field: str
) -> None:
    answer = client.get(f"/api/tasks{query}", headers=auth[Role.VIEWER])

    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"]["field"] == field


def test_task_types_are_seen_and_registered_names(client: TestClient, auth: Headers) -> None:
    answer = client.get("/api/task/types", headers=auth[Role.VIEWER])

    assert answer.json() == {
        "task-types": ["reports.build", "tasks.add", "tasks.mul", "tasks.reduce"]
    }


def test_search_filters_and_sort_work_on_every_database(database_url: str, data_dir: Path) -> None:
    """The JSON-as-text search and the missing-first sort on SQLite, PostgreSQL and MySQL."""
    ctx = AppContext.open(Settings(data_dir=data_dir, database_url=database_url))
    try:
        with ctx.session() as session:
            session.add_all(
                [
                    _run("a", 0, RunState.SUCCESS, kwargs={"host": "db1"}, result=[1, 2]),
                    _run("b", 1, RunState.SENT, received_at=None, args=["100%_x"]),
                    _run("c", 2, RunState.LOST, task="tasks.scan", kwargs={"n": 5}),
                ]
            )

        def ids(**query: Any) -> list[str]:
            with ctx.session() as session:
                return [run.id for run in list_runs(session, TaskQuery(limit=10, **query))]

        assert ids() == ["c", "b", "a"]
        assert ids(search=parse_search("kwargs:host=db1", run_states_for)) == ["a"]
        assert ids(search=parse_search("kwargs:n=5", run_states_for)) == ["c"]
        assert ids(search=parse_search("args:100%_", run_states_for)) == ["b"]
        assert ids(search=parse_search("args:100%x", run_states_for)) == []
        assert ids(search=parse_search("result:2]", run_states_for)) == ["a"]
        assert ids(search=parse_search("scan state:SUCCESS", run_states_for)) == ["c", "a"]
        assert ids(sort_by="received") == ["b", "a", "c"]
        assert ids(sort_by="-received") == ["c", "a", "b"]
        assert ids(states=run_states_for("FAILURE"), task="tasks.scan") == ["c"]
        with ctx.session() as session:
            assert children_of(session, ["a", "b"]) == {"a": [], "b": []}
    finally:
        ctx.close()
