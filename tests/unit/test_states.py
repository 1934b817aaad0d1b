import itertools

from mainspring.core.states import FINAL_STATES, RunState, advances


def test_lifecycle_moves_forward_only():
    assert advances(RunState.SENT, RunState.STARTED)
    assert not advances(RunState.STARTED, RunState.RECEIVED)
    assert not advances(RunState.SUCCESS, RunState.STARTED)


def test_final_states_never_change():
    for final, other in itertools.product(FINAL_STATES, RunState):
        assert not advances(final, other)


def test_a_retried_run_can_start_again():
    assert advances(RunState.RETRY, RunState.STARTED)
    assert advances(RunState.RETRY, RunState.SUCCESS)
