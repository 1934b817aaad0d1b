"""Fixtures shared by the API tests: cheap password hashing, one user and token per role."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from celery import Celery
from fastapi.testclient import TestClient

from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.services import users as user_service
from mainspring.services.auth import create_api_token
from mainspring.services.users import create_user
from mainspring.settings import Settings
from mainspring.worker.app import make_celery

PASSWORD = "correct-horse-1"


@pytest.fixture
def fast_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap Argon2 parameters, for tests that hash and verify hundreds of passwords."""
    cheap = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    monkeypatch.setattr(user_service, "_hasher", cheap)


@pytest.fixture
def tokens(ctx: AppContext, fast_argon2: None) -> dict[Role, str]:
    """One user per role, named after it, and a bearer token for each."""
    secrets = {}
    with ctx.session() as s:
        for role in Role:
            user = create_user(s, role.value, PASSWORD, role)
            secrets[role], _ = create_api_token(s, user, "test")
    return secrets


@pytest.fixture
def client(ctx: AppContext, tokens: dict[Role, str]) -> Iterator[TestClient]:
    with TestClient(create_app(ctx)) as client:
        yield client


@pytest.fixture
def celery(settings: Settings) -> Iterator[Celery]:
    """Mainspring's Celery app on the test's settings (set ``broker_url`` in ``settings``)."""
    app = make_celery(settings)
    yield app
    app.close()


@pytest.fixture
def celery_client(ctx: AppContext, tokens: dict[Role, str], celery: Celery) -> Iterator[TestClient]:
    """A test client whose app publishes with the test's own Celery app."""
    web = create_app(ctx)
    web.state.celery = celery
    with TestClient(web) as client:
        yield client


@pytest.fixture
def auth(tokens: dict[Role, str]) -> dict[Role | None, dict[str, str]]:
    """Request headers per role; ``None`` is the anonymous caller."""
    headers: dict[Role | None, dict[str, str]] = {
        role: {"Authorization": f"Bearer {secret}"} for role, secret in tokens.items()
    }
    headers[None] = {}
    return headers
