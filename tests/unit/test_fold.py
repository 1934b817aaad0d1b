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
