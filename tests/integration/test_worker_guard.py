"""The Redis run guard's claim script on a real Redis: one winner per run attempt, takeovers,
stored revocations, the STARTED record written with a winning claim (never over a SUCCESS),
and recovery when the server forgets the script or drops the guard's connection."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from mainspring.worker.guard import RedisRunStore, StartedRecord, Verdict

pytestmark = pytest.mark.redis

META_KEY = "celery-task-meta-{run_id}"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _started(run_id: str, ttl: int = 600) -> StartedRecord:
    meta = {"status": "STARTED", "result": {"hostname": "w@h"}, "task_id": run_id}
    return StartedRecord(META_KEY.format(run_id=run_id), json.dumps(meta), ttl)


def _meta(client: redis.Redis, run_id: str) -> Any:
    raw = client.get(META_KEY.format(run_id=run_id))
    return None if raw is None else json.loads(raw)


def test_the_first_claim_of_an_attempt_wins_and_later_ones_are_duplicates(
    client: redis.Redis,
) -> None:
    store, other = RedisRunStore(client, 60), RedisRunStore(client, 60)
    assert store.claim("r1", 0, "a|1", False) is Verdict.RUN
    assert other.claim("r1", 0, "b|2", False) is Verdict.DUPLICATE
    assert store.claim("r1", 0, "a|1", False) is Verdict.DUPLICATE
    assert other.claim("r1", 1, "b|2", False) is Verdict.RUN  # a retry is a new attempt
    assert store.holder("r1", 0) == "a|1"
    assert 0 < client.ttl("mainspring:run:r1:0") <= 60


def test_a_takeover_claims_a_held_attempt_for_the_new_holder(client: redis.Redis) -> None:
    store = RedisRunStore(client, 60)
    assert store.claim("r2", 0, "a|1", False) is Verdict.RUN
    assert store.claim("r2", 0, "b|2", True) is Verdict.RUN
    assert store.holder("r2", 0) == "b|2"


def test_a_stored_revocation_discards_every_claim(client: redis.Redis) -> None:
    store = RedisRunStore(client, 60, records_started=True)
    store.revoke("r3", terminate=False)
    assert store.claim("r3", 0, "a|1", False, _started("r3")) is Verdict.REVOKED
    assert store.claim("r3", 0, "a|1", True, _started("r3")) is Verdict.REVOKED
    assert _meta(client, "r3") is None
    assert not store.terminate_requested("r3")
    store.revoke("r3", terminate=True)
    assert store.terminate_requested("r3")


def test_a_winning_claim_records_started_and_a_duplicate_does_not(client: redis.Redis) -> None:
    store = RedisRunStore(client, 60, records_started=True)
    assert store.claim("r4", 0, "a|1", False, _started("r4", ttl=600)) is Verdict.RUN
    assert _meta(client, "r4")["status"] == "STARTED"
    assert 0 < client.ttl(META_KEY.format(run_id="r4")) <= 600
    client.set(META_KEY.format(run_id="r4"), json.dumps({"status": "FAILURE"}))
    assert store.claim("r4", 0, "b|2", False, _started("r4")) is Verdict.DUPLICATE
    assert _meta(client, "r4")["status"] == "FAILURE"


def test_started_never_replaces_a_stored_success(client: redis.Redis) -> None:
    store = RedisRunStore(client, 60, records_started=True)
    client.set(META_KEY.format(run_id="r5"), json.dumps({"status": "SUCCESS", "result": 3}))
    assert store.claim("r5", 0, "a|1", True, _started("r5")) is Verdict.RUN
    assert _meta(client, "r5") == {"status": "SUCCESS", "result": 3}


def test_a_store_that_does_not_record_started_ignores_the_record(client: redis.Redis) -> None:
    store = RedisRunStore(client, 60, records_started=False)
    assert store.claim("r6", 0, "a|1", False, _started("r6")) is Verdict.RUN
    assert _meta(client, "r6") is None


def test_the_guard_recovers_when_redis_forgets_the_script(client: redis.Redis) -> None:
    store = RedisRunStore(client, 60)
    assert store.claim("r7", 0, "a|1", False) is Verdict.RUN
    client.script_flush()
    assert store.claim("r8", 0, "a|1", False) is Verdict.RUN
    assert store.claim("r8", 0, "b|2", False) is Verdict.DUPLICATE


def test_the_guard_reconnects_after_its_connection_is_dropped(
    client: redis.Redis, redis_url: str
) -> None:
    store = RedisRunStore(client, 60)
    assert store.claim("r9", 0, "a|1", False) is Verdict.RUN
    db = int(redis_url.rsplit("/", 1)[1])
    mine = client.client_id()
    # Only this test's own database: other test processes use other indexes.
    others = [c for c in client.client_list() if int(c["db"]) == db and int(c["id"]) != mine]
    assert others, "the guard's connection should be listed"
    for connection in others:
        client.client_kill_filter(_id=connection["id"])
    assert store.claim("r10", 0, "a|1", False) is Verdict.RUN
    assert store.claim("r10", 0, "b|2", False) is Verdict.DUPLICATE
