"""The login rate limiter: a sliding window per (username, address), on a fake clock."""

from __future__ import annotations

import pytest

from mainspring.services.ratelimit import LoginKey, LoginRateLimiter, TooManyAttempts


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> LoginRateLimiter:
    return LoginRateLimiter(max_failures=3, window_s=60.0, clock=clock)


KEY = LoginKey.of("alice", "10.0.0.1")


def _fail(limiter: LoginRateLimiter, times: int, key: LoginKey = KEY) -> None:
    for _ in range(times):
        limiter.check(key)
        limiter.failed(key)


def test_failures_below_the_limit_do_not_block(limiter: LoginRateLimiter) -> None:
    _fail(limiter, 2)
    assert limiter.retry_after(KEY) == 0.0
    limiter.check(KEY)


def test_reaching_the_limit_blocks_until_the_oldest_failure_leaves_the_window(
    limiter: LoginRateLimiter, clock: FakeClock
) -> None:
    _fail(limiter, 1)
    clock.t += 20
    _fail(limiter, 2)
    assert limiter.retry_after(KEY) == pytest.approx(40.0)
    with pytest.raises(TooManyAttempts) as blocked:
        limiter.check(KEY)
    assert blocked.value.retry_after_s == 40
    assert "try again in 40 s" in str(blocked.value)
    clock.t += 40
    limiter.check(KEY)


def test_window_slides_so_one_more_failure_blocks_again(
    limiter: LoginRateLimiter, clock: FakeClock
) -> None:
    _fail(limiter, 1)
    clock.t += 30
    _fail(limiter, 2)
    clock.t += 30  # the first failure has left the window; two remain
    limiter.check(KEY)
    limiter.failed(KEY)
    assert limiter.retry_after(KEY) == pytest.approx(30.0)


def test_retry_after_is_rounded_up_to_whole_seconds(
    limiter: LoginRateLimiter, clock: FakeClock
) -> None:
    _fail(limiter, 3)
    clock.t += 59.5
    with pytest.raises(TooManyAttempts) as blocked:
        limiter.check(KEY)
    assert blocked.value.retry_after_s == 1


def test_success_clears_the_failures(limiter: LoginRateLimiter) -> None:
    _fail(limiter, 2)
    limiter.succeeded(KEY)
    _fail(limiter, 2)
    limiter.check(KEY)


@pytest.mark.parametrize(
    "other", [LoginKey.of("alice", "10.0.0.2"), LoginKey.of("bob", "10.0.0.1")]
)
def test_other_names_and_addresses_keep_their_own_budget(
    limiter: LoginRateLimiter, other: LoginKey
) -> None:
    _fail(limiter, 3)
    limiter.check(other)
    with pytest.raises(TooManyAttempts):
        limiter.check(KEY)


def test_username_case_does_not_give_extra_attempts(limiter: LoginRateLimiter) -> None:
    _fail(limiter, 3, LoginKey.of("Alice", "10.0.0.1"))
    with pytest.raises(TooManyAttempts):
        limiter.check(LoginKey.of("ALICE", "10.0.0.1"))


def test_missing_address_is_counted_as_one_unknown_address(limiter: LoginRateLimiter) -> None:
    _fail(limiter, 3, LoginKey.of("alice", None))
    with pytest.raises(TooManyAttempts):
        limiter.check(LoginKey.of("alice", None))


def test_oldest_keys_are_forgotten_past_max_keys(clock: FakeClock) -> None:
    limiter = LoginRateLimiter(max_failures=1, window_s=60.0, clock=clock, max_keys=2)
    first, second, third = (LoginKey.of(name, "a") for name in ("u1", "u2", "u3"))
    for key in (first, second, third):
        limiter.failed(key)
    assert limiter.retry_after(first) == 0.0
    assert limiter.retry_after(second) > 0
    assert limiter.retry_after(third) > 0


def test_expired_keys_are_dropped(limiter: LoginRateLimiter, clock: FakeClock) -> None:
    _fail(limiter, 3)
    clock.t += 61
    assert limiter.retry_after(KEY) == 0.0
    assert KEY not in limiter._failures


@pytest.mark.parametrize("kwargs", [{"max_failures": 0}, {"window_s": 0.0}, {"max_keys": 0}])
def test_nonsense_limits_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LoginRateLimiter(**kwargs)  # type: ignore[arg-type]
