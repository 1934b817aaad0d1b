"""Login rate limiting wired into HTTP Basic (429 JSON) and the console login form."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.services import users as user_service
from mainspring.services.ratelimit import LoginRateLimiter
from mainspring.services.users import create_user

PASSWORD = "correct-horse-1"


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(autouse=True)
def fast_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        user_service, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(ctx: AppContext, clock: FakeClock) -> FastAPI:
    with ctx.session() as s:
        create_user(s, "alice", PASSWORD, Role.OPERATOR)
        create_user(s, "bob", PASSWORD, Role.VIEWER)
    app = create_app(ctx)
    app.state.login_limiter = LoginRateLimiter(max_failures=10, window_s=300.0, clock=clock)
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def _fail_basic(client: TestClient, times: int, username: str = "alice") -> list[int]:
    return [
        client.get("/api/v1/me", auth=(username, "wrong-password")).status_code
        for _ in range(times)
    ]


def test_the_app_limits_logins_by_default(ctx: AppContext) -> None:
    limiter = create_app(ctx).state.login_limiter
    assert (limiter.max_failures, limiter.window_s) == (10, 300.0)


def test_eleventh_basic_attempt_in_the_window_is_429_even_with_the_right_password(
    client: TestClient,
) -> None:
    assert _fail_basic(client, 10) == [401] * 10
    response = client.get("/api/v1/me", auth=("alice", PASSWORD))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "300"
    assert response.json() == {
        "detail": "too many failed login attempts; try again in 300 s",
    }


def test_block_lifts_when_the_window_has_passed(client: TestClient, clock: FakeClock) -> None:
    _fail_basic(client, 10)
    clock.t += 120
    assert client.get("/api/v1/me", auth=("alice", PASSWORD)).headers["Retry-After"] == "180"
    clock.t += 180
    assert client.get("/api/v1/me", auth=("alice", PASSWORD)).status_code == 200


def test_other_users_are_not_blocked(client: TestClient) -> None:
    _fail_basic(client, 10)
    assert client.get("/api/v1/me", auth=("bob", PASSWORD)).status_code == 200


def test_unknown_usernames_are_limited_too(client: TestClient) -> None:
    assert _fail_basic(client, 11, username="mallory") == [401] * 10 + [429]


def test_a_success_resets_the_count(client: TestClient) -> None:
    _fail_basic(client, 9)
    assert client.get("/api/v1/me", auth=("alice", PASSWORD)).status_code == 200
    assert _fail_basic(client, 10) == [401] * 10


def test_bearer_tokens_are_not_affected(client: TestClient) -> None:
    created = client.post("/api/v1/tokens", json={"name": "ci"}, auth=("alice", PASSWORD))
    secret = created.json()["secret"]
    _fail_basic(client, 10)
    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200


def _console_login(client: TestClient, password: str) -> tuple[int, str]:
    page = client.get("/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match is not None
    response = client.post(
        "/login",
        data={"username": "alice", "password": password, "csrf_token": match.group(1)},
        follow_redirects=False,
    )
    return response.status_code, response.text


def test_console_login_form_says_when_to_try_again(client: TestClient, clock: FakeClock) -> None:
    for _ in range(10):
        status, text = _console_login(client, "wrong-password")
        assert status == 200
        assert "Wrong username or password" in text
    clock.t += 60
    status, text = _console_login(client, PASSWORD)
    assert status == 429
    assert "Too many attempts, try again in 240 s." in text
    clock.t += 240
    assert _console_login(client, PASSWORD)[0] == 303


def test_console_and_basic_failures_share_one_budget(client: TestClient) -> None:
    for _ in range(5):
        _console_login(client, "wrong-password")
    assert _fail_basic(client, 6) == [401] * 5 + [429]
