"""Batches merge like the events they fold: a kept or waiting batch takes in later ones."""

from mainspring.core.states import RunState
from mainspring.recorder.batch import Batch

SENT = {"type": "task-sent", "uuid": "r1", "name": "t.a", "timestamp": 10.0}
STARTED = {"type": "task-started", "uuid": "r1", "hostname": "w", "timestamp": 11.0}
DONE = {"type": "task-succeeded", "uuid": "r1", "timestamp": 12.0}
BEAT = {"type": "worker-heartbeat", "hostname": "w", "timestamp": 11.5}


def _batch(*events: dict[str, object], ack: object = None) -> Batch:
    batch = Batch()
    for event in events:
        batch.add(event)
    batch.ack = ack
    return batch


def test_merging_later_batches_gives_what_one_batch_of_all_events_gives() -> None:
    whole = _batch(SENT, STARTED, BEAT, DONE)
    for first, second in [((DONE,), (SENT, STARTED, BEAT)), ((SENT, BEAT), (DONE, STARTED))]:
        merged = _batch(*first)
        merged.merge_later(_batch(*second))
        assert merged.patches["r1"].state is RunState.SUCCESS
        assert merged.patches["r1"].values == whole.patches["r1"].values
        assert merged.events == 4
        assert merged.workers == [BEAT]


def test_the_newest_message_is_the_one_acknowledged() -> None:
    kept = _batch(SENT, ack="m1")
    kept.merge_later(_batch(STARTED, ack="m2"))
    kept.merge_later(_batch(ack=None))
    assert kept.ack == "m2"


def test_an_empty_batch_is_false_and_one_with_only_an_ack_is_not() -> None:
    assert not Batch()
    assert _batch(ack="m1")
