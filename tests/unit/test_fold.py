import itertools

from mainspring.core.states import RunState
from mainspring.recorder.fold import RunPatch, fold

EVENTS = [
    {
        "type": "task-sent",
        "uuid": "r1",
        "name": "tasks.add",
        "queue": "q",
        "timestamp": 100.0,
        "hostname": "client@box",
    },
    {"type": "task-received", "uuid": "r1", "hostname": "w1", "timestamp": 101.0, "retries": 0},
    {"type": "task-started", "uuid": "r1", "hostname": "w1", "pid": 42, "timestamp": 102.0},
    {"type": "task-succeeded", "uuid": "r1", "hostname": "w1", "runtime": 0.5, "timestamp": 102.5},
]


def _fold_all(events):
    patches: dict[str, RunPatch] = {}
    for event in events:
        fold(patches, event)
    return patches["r1"]


def test_any_order_and_repetition_gives_the_same_record():
    expected = _fold_all(EVENTS)
    assert expected.state is RunState.SUCCESS
    for order in itertools.permutations(EVENTS):
        patch = _fold_all([*order, *order])
        assert patch.state == expected.state
        assert patch.values == expected.values


def test_worker_fields_come_from_the_worker_not_the_sender():
    patch = _fold_all(EVENTS)
    assert patch.values["worker"] == "w1"
    assert patch.values["worker_pid"] == 42
    assert patch.values["task"] == "tasks.add"
    assert patch.values["runtime_ms"] == 500.0


def test_failure_records_exception_type_and_traceback():
    patches: dict[str, RunPatch] = {}
    fold(
        patches,
        {
            "type": "task-failed",
            "uuid": "r2",
            "exception": "ValueError('bad')",
            "traceback": "Traceback ...",
            "timestamp": 5.0,
        },
    )
    patch = patches["r2"]
    assert patch.state is RunState.FAILURE
    assert patch.values["exception_type"] == "ValueError"
    assert patch.values["traceback"] == "Traceback ..."


def test_expired_revocation_is_expired():
    patches: dict[str, RunPatch] = {}
    fold(patches, {"type": "task-revoked", "uuid": "r3", "expired": True, "timestamp": 1.0})
    assert patches["r3"].state is RunState.EXPIRED


def test_log_events_are_collected_as_chunks():
    patches: dict[str, RunPatch] = {}
    fold(patches, {"type": "task-log", "uuid": "r4", "seq": 1, "text": "b", "timestamp": 2.0})
    fold(patches, {"type": "task-log", "uuid": "r4", "seq": 0, "text": "a", "timestamp": 1.0})
    assert [c.text for c in sorted(patches["r4"].logs, key=lambda c: c.seq)] == ["a", "b"]
    assert patches["r4"].state is None


RETRY_EVENTS = [
    {"type": "task-sent", "uuid": "r5", "name": "t", "timestamp": 1.0},
    {"type": "task-received", "uuid": "r5", "hostname": "w", "timestamp": 2.0, "retries": 0},
    {"type": "task-started", "uuid": "r5", "hostname": "w", "timestamp": 3.0},
    {"type": "task-retried", "uuid": "r5", "exception": "IOError()", "timestamp": 4.0},
    {"type": "task-received", "uuid": "r5", "hostname": "w", "timestamp": 5.0, "retries": 1},
    {"type": "task-started", "uuid": "r5", "hostname": "w", "timestamp": 6.0},
    {"type": "task-failed", "uuid": "r5", "exception": "IOError('x')", "timestamp": 7.0},
]


def test_a_final_state_is_never_left_whatever_comes_after():
    for late in ("task-received", "task-started", "task-retried", "task-sent"):
        patches: dict[str, RunPatch] = {}
        fold(patches, {"type": "task-succeeded", "uuid": "r", "timestamp": 9.0})
        fold(patches, {"type": late, "uuid": "r", "timestamp": 10.0})
        assert patches["r"].state is RunState.SUCCESS, late


def test_retried_run_ends_failed_with_the_highest_attempt_in_any_order():
    results = set()
    for order in (RETRY_EVENTS, RETRY_EVENTS[::-1], RETRY_EVENTS[3:] + RETRY_EVENTS[:3]):
        patches: dict[str, RunPatch] = {}
        for event in [*order, *order]:
            fold(patches, event)
        patch = patches["r5"]
        results.add((patch.state, patch.values["attempt"], patch.values["started_at"]))
    assert len(results) == 1
    state, attempt, _ = results.pop()
    assert state is RunState.FAILURE
    assert attempt == 1


def test_duplicated_log_chunks_are_kept_once_by_sequence_in_the_writer_input():
    patches: dict[str, RunPatch] = {}
    chunk = {"type": "task-log", "uuid": "r6", "seq": 0, "text": "a", "at": "2026-01-01T00:00:00"}
    fold(patches, chunk)
    fold(patches, chunk)
    assert {c.seq for c in patches["r6"].logs} == {0}
    assert patches["r6"].logs[0].at.tzinfo is not None
    assert patches["r6"].logs[0].at.year == 2026


def test_event_argument_reprs_are_masked():
    patches: dict[str, RunPatch] = {}
    fold(
        patches,
        {
            "type": "task-sent",
            "uuid": "r7",
            "args": "('ops',)",
            "kwargs": "{'password': 'hunter2'}",
            "timestamp": 1.0,
        },
    )
    assert patches["r7"].values["kwargs_repr"] == "{'password': '***'}"
    assert patches["r7"].values["args_repr"] == "('ops',)"


def test_merging_patches_keeps_first_values_and_moves_state_forward():
    first: dict[str, RunPatch] = {}
    second: dict[str, RunPatch] = {}
    fold(first, EVENTS[1])
    fold(second, EVENTS[3])
    fold(second, {"type": "task-log", "uuid": "r1", "seq": 0, "text": "x", "timestamp": 1.0})
    patch = first["r1"]
    patch.merge(second["r1"])
    assert patch.state is RunState.SUCCESS
    assert patch.values["received_at"] is not None
    assert patch.values["finished_at"] is not None
    assert [c.text for c in patch.logs] == ["x"]
