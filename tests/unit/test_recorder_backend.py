from datetime import UTC, datetime

from mainspring.core.states import RunState
from mainspring.recorder.backend import parse_time, patch_from_meta
from mainspring.recorder.registry import parse_replies


def test_pending_meta_says_nothing():
    assert patch_from_meta("r", {"status": "PENDING", "result": None}) is None


def test_success_meta_brings_result_real_arguments_and_finish_time():
    meta = {
        "status": "SUCCESS",
        "result": 3,
        "date_done": "2026-01-02T03:04:05.123456+00:00",
        "args": [1, 2],
        "kwargs": {"api_token": "secret-value"},
        "name": "tasks.add",
        "worker": "w1@host",
        "queue": "celery",
        "retries": 1,
    }
    patch = patch_from_meta("r", meta)
    assert patch is not None
    assert patch.state is RunState.SUCCESS
    assert patch.values["result"] == 3
    assert patch.values["args"] == [1, 2]
    assert patch.values["kwargs"] == {"api_token": "***"}
    assert patch.values["task"] == "tasks.add"
    assert patch.values["worker"] == "w1@host"
    assert patch.values["queue"] == "celery"
    assert patch.values["attempt"] == 1
    assert patch.values["finished_at"] == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def test_failure_meta_brings_exception_and_traceback():
    meta = {
        "status": "FAILURE",
        "result": {"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"},
        "traceback": "Traceback (most recent call last): ...",
        "date_done": datetime(2026, 1, 1, 0, 0),
    }
    patch = patch_from_meta("r", meta)
    assert patch is not None
    assert patch.state is RunState.FAILURE
    assert patch.values["exception_type"] == "ValueError"
    assert "boom" in patch.values["exception_message"]
    assert patch.values["traceback"].startswith("Traceback")
    assert patch.values["finished_at"].tzinfo is UTC


def test_started_meta_names_the_worker_and_is_not_final():
    patch = patch_from_meta("r", {"status": "STARTED", "result": {"pid": 7, "hostname": "w"}})
    assert patch is not None
    assert patch.state is RunState.STARTED
    assert patch.values == {"worker": "w", "worker_pid": 7}


def test_unparseable_times_are_ignored():
    assert parse_time("yesterday") is None
    assert parse_time(None) is None


def test_inspect_replies_become_worker_info():
    info = parse_replies(
        [{"name": "default"}, {"name": "host.w1"}],
        ["tasks.add [rate_limit=10/s]", "mainspring.shell"],
        {
            "pool": {"implementation": "celery.concurrency.thread:TaskPool", "max-concurrency": 4},
            "total": {"tasks.add": 3, "mainspring.shell": 2},
            "pid": 99,
        },
    )
    assert info.queues == ["default", "host.w1"]
    assert info.registered_tasks == ["mainspring.shell", "tasks.add"]
    assert info.pool == "threads"
    assert info.concurrency == 4
    assert info.processed == 5
    assert info.pid == 99


def test_missing_inspect_replies_leave_fields_empty():
    info = parse_replies(None, None, None)
    assert info.queues == []
    assert info.pool is None
