"""The run lifecycle and the other closed vocabularies, as ``StrEnum``s.

A run moves forward only: each state has a rank, and an event that would move a run to a
lower rank (a late ``task-received`` after ``task-succeeded``, say) is ignored.
"""

from enum import StrEnum


class RunState(StrEnum):
    SCHEDULED = "SCHEDULED"  # claimed by a scheduler, waiting for its due instant
    SENT = "SENT"  # published to the broker
    RECEIVED = "RECEIVED"  # a worker took the message
    STARTED = "STARTED"  # the task body is running
    RETRY = "RETRY"  # failed and will be retried (a new attempt follows)
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    REVOKED = "REVOKED"  # cancelled before or while running
    LOST = "LOST"  # its worker went away while running it
    EXPIRED = "EXPIRED"  # not started before its expiry
    SKIPPED = "SKIPPED"  # a fire deliberately not executed (overlap, misfire, offline host)

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {
        RunState.SUCCESS,
        RunState.FAILURE,
        RunState.REVOKED,
        RunState.LOST,
        RunState.EXPIRED,
        RunState.SKIPPED,
    }
)

_RANK = {
    RunState.SCHEDULED: 0,
    RunState.SENT: 1,
    RunState.RECEIVED: 2,
    RunState.STARTED: 3,
    RunState.RETRY: 4,
}


def state_rank(state: RunState) -> int:
    """Order of states along the lifecycle; all final states share the top rank."""
    return _RANK.get(state, 10)


def advances(current: RunState | None, new: RunState) -> bool:
    """Whether moving from ``current`` to ``new`` goes forward (final states never change)."""
    if current is None:
        return True
    if current.is_final:
        return False
    if current is RunState.RETRY and new in (RunState.RECEIVED, RunState.STARTED):
        return True  # the next attempt of a retried task
    return state_rank(new) > state_rank(current)


class TriggerSource(StrEnum):
    """Why a run exists."""

    SCHEDULE = "schedule"
    API = "api"
    MANUAL = "manual"
    RETRY = "retry"
    WORKFLOW = "workflow"
    DEPENDENCY = "dependency"
    EXTERNAL = "external"  # sent by a plain Celery client, seen only through events


class TriggerKind(StrEnum):
    CRON = "cron"
    INTERVAL = "interval"
    ONCE = "once"
    MANUAL = "manual"


class MisfirePolicy(StrEnum):
    SKIP = "skip"
    RUN_ONCE = "run_once"
    RUN_ALL = "run_all"


class OverlapPolicy(StrEnum):
    ALLOW = "allow"
    SKIP = "skip"
    QUEUE_ONE = "queue_one"
    REPLACE = "replace"


class Role(StrEnum):
    """What a user or token may do: admin everything, operator jobs and runs, viewer read."""

    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"


class WorkerStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
