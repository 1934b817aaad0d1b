"""Jobs on PostgreSQL and MariaDB: version conflicts under real concurrency, JSON tag filters,
and text PostgreSQL refuses."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.errors import ConflictError
from mainspring.services import jobs as job_service
from mainspring.services.job_queries import StaleVersionError, lock_job
from mainspring.services.users import create_user
from mainspring.settings import Settings

pytestmark = pytest.mark.usefixtures("fast_argon2")

ADMIN = ("admin", "correct-horse-1")
DATABASES = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]


@pytest.fixture
def db_ctx(database_url: str, data_dir: Path) -> Iterator[AppContext]:
    settings = Settings(data_dir=data_dir, database_url=database_url, secret_key="k")
    context = AppContext.open(settings)
    with context.session() as s:
        create_user(s, ADMIN[0], ADMIN[1], Role.ADMIN)
    yield context
    context.close()


def _spec(name: str, **values: object) -> job_service.JobSpec:
    return job_service.JobSpec(
        name=name, task="t.x", trigger={"kind": "cron", "expr": "0 2 * * *"}, timezone="UTC",
        **values,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.mark.parametrize("database_url", DATABASES, indirect=True)
def test_a_stale_version_is_a_409_over_http(db_ctx: AppContext) -> None:
    with TestClient(create_app(db_ctx)) as client:
        body = {"name": "nightly", "task": "t.x", "trigger": {"kind": "cron", "expr": "0 2 * * *"}}
        job = client.post("/api/v1/jobs", json=body, auth=ADMIN).json()
        url = f"/api/v1/jobs/{job['id']}"
        assert client.patch(url, json={"version": 1, "max_runs": 5}, auth=ADMIN).status_code == 200
        stale = client.patch(url, json={"version": 1, "max_runs": 9}, auth=ADMIN)
        assert stale.status_code == 409
        assert stale.json()["detail"]["field"] == "version"
        assert stale.json()["detail"]["current_version"] == 2
        assert client.get(url, auth=ADMIN).json()["max_runs"] == 5


@pytest.mark.parametrize("database_url", DATABASES, indirect=True)
def test_of_two_concurrent_edits_from_one_read_exactly_one_wins(db_ctx: AppContext) -> None:
    """The first editor holds the row lock; the second waits, then finds the version moved."""
    with db_ctx.session() as s:
        job_id = job_service.create_job(s, _spec("nightly")).id
    first_locked, second_done = threading.Event(), threading.Event()
    outcome: list[BaseException | int] = []

    def second_editor() -> None:
        first_locked.wait(10)
        try:
            with db_ctx.session() as s:
                job = lock_job(s, job_id, version=1)  # blocks until the first commits
                job_service.patch_job(s, job, {"description": "second"})
                outcome.append(job.version)
        except BaseException as exc:  # reported to the main thread
            outcome.append(exc)
        finally:
            second_done.set()

    thread = threading.Thread(target=second_editor)
    thread.start()
    with db_ctx.session() as s:
        job = lock_job(s, job_id, version=1)
        job_service.patch_job(s, job, {"description": "first"})
        first_locked.set()
        assert not second_done.wait(0.5), "the second editor did not wait for the row lock"
    thread.join(30)
    [result] = outcome
    assert isinstance(result, StaleVersionError)
    assert (result.sent, result.current) == (1, 2)
    with db_ctx.session() as s:
        stored = job_service.get_job(s, job_id)
        assert (stored.description, stored.version) == ("first", 2)


@pytest.mark.parametrize("database_url", DATABASES, indirect=True)
def test_two_concurrent_creations_of_one_name_give_one_job(db_ctx: AppContext) -> None:
    barrier = threading.Barrier(2)
    outcome: list[str] = []

    def create() -> None:
        barrier.wait(10)
        try:
            with db_ctx.session() as s:
                job_service.create_job(s, _spec("nightly"))
            outcome.append("created")
        except ConflictError:
            outcome.append("conflict")

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcome) == ["conflict", "created"]


@pytest.mark.parametrize("database_url", DATABASES, indirect=True)
def test_two_concurrent_upserts_of_a_new_name_create_once_and_update_once(
    db_ctx: AppContext,
) -> None:
    barrier = threading.Barrier(2)
    created: list[bool] = []

    def upsert(expr: str) -> None:
        barrier.wait(10)
        spec = job_service.JobSpec(name="weekly", task="t.x", timezone="UTC",
                                   trigger={"kind": "cron", "expr": expr})  # fmt: skip
        with db_ctx.session() as s:
            created.append(job_service.upsert_job(s, spec)[1])

    threads = [threading.Thread(target=upsert, args=(e,)) for e in ("0 8 * * 3", "0 9 * * 3")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(created) == [False, True]
    with db_ctx.session() as s:
        assert job_service.get_job_by_name(s, "weekly").version == 2


@pytest.mark.parametrize("database_url", DATABASES, indirect=True)
def test_tag_and_text_filters(db_ctx: AppContext) -> None:
    with db_ctx.session() as s:
        job_service.create_job(s, _spec("backup db", tags=["db", "nightly"]))
        job_service.create_job(s, _spec("backup files", tags=["files"], description="100% _x"))
        job_service.create_job(s, _spec("报表", tags=["报表", 'd"b']))
    with TestClient(create_app(db_ctx)) as client:

        def names(**params: str) -> list[str]:
            body = client.get("/api/v1/jobs", params=params, auth=ADMIN).json()
            assert body["total"] == len(body["items"])
            return [item["name"] for item in body["items"]]

        assert names(tag="db") == ["backup db"]
        assert names(tag="报表") == ["报表"]
        assert names(tag='d"b') == ["报表"]
        assert names(tag="nigh") == []
        assert names(text="BACKUP") == ["backup db", "backup files"]
        assert names(text="%") == ["backup files"]
        assert names(text="_x") == ["backup files"]


@pytest.mark.parametrize("database_url", DATABASES, indirect=True)
def test_nul_characters_are_422s_or_stored_never_500s(db_ctx: AppContext) -> None:
    with TestClient(create_app(db_ctx)) as client:
        base = {"name": "n", "task": "t.x", "trigger": {"kind": "manual"}}
        for change in ({"description": "a\x00b"}, {"timezone": "UTC\x00"}, {"tags": ["a\x00"]},
                       {"trigger": {"kind": "cron", "expr": "0 2 * * *\x00"}}):  # fmt: skip
            response = client.post("/api/v1/jobs", json={**base, **change}, auth=ADMIN)
            assert response.status_code == 422, change
        response = client.get("/api/v1/jobs", params={"text": "a\x00"}, auth=ADMIN)
        assert response.status_code == 422
        assert client.get("/api/v1/jobs/by-name/a%00", auth=ADMIN).status_code == 422
        assert client.get("/api/v1/jobs/1/runs?cursor=a%00", auth=ADMIN).status_code == 422
        stored = client.post("/api/v1/jobs", json={**base, "kwargs": {"s": "a\x00b"}}, auth=ADMIN)
        assert stored.status_code == 201, stored.text
        assert client.get(f"/api/v1/jobs/{stored.json()['id']}", auth=ADMIN).json()["kwargs"] == {
            "s": "a\x00b"
        }
