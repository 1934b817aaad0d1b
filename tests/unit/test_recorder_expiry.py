"""The recorder ends runs that a broker dropped unstarted because they expired."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mainspring.core.states import RunState
from mainspring.recorder.maintenance import EXPIRY_GRACE_S, _expired

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def row(state: str = "SENT", expires: float | None = 10, ago: float = 60) -> tuple:
    options = {"expires": expires} if expires is not None else {}
    return ("r1", state, options, NOW - timedelta(seconds=ago), None)


def test_sent_run_past_its_expiry_becomes_expired() -> None:
    patch = _expired(row(), NOW)
    assert patch is not None
    assert patch.state is RunState.EXPIRED
    assert "expiry of 10 s" in patch.values["exception_message"]


def test_run_within_expiry_and_grace_is_left_alone() -> None:
    assert _expired(row(ago=10 + EXPIRY_GRACE_S - 1), NOW) is None


def test_run_without_expiry_or_already_received_is_left_alone() -> None:
    assert _expired(row(expires=None), NOW) is None
    assert _expired(row(state="RECEIVED"), NOW) is None


def test_scheduled_runs_count_expiry_from_their_due_instant() -> None:
    due = NOW - timedelta(seconds=5)
    sent_long_ago = ("r2", "SENT", {"expires": 10}, NOW - timedelta(hours=1), due)
    assert _expired(sent_long_ago, NOW) is None
