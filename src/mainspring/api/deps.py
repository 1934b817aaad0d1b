"""Request-scoped access to what ``create_app`` was given: the context and one DB session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from mainspring.context import AppContext
from mainspring.settings import Settings


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def get_settings(request: Request) -> Settings:
    """The app's settings, with the secret key resolved once at start."""
    settings: Settings = request.app.state.settings
    return settings


def get_secret_key(request: Request) -> str:
    """The key that signs session cookies and CSRF markers (never None once the app runs)."""
    key: str = request.app.state.secret_key
    return key


# Async twins of the getters above, for ``Depends``: FastAPI runs a plain ``def`` dependency
# in its thread pool, a hop that costs more than these attribute reads.
async def ctx_dependency(request: Request) -> AppContext:
    return get_ctx(request)


async def secret_key_dependency(request: Request) -> str:
    return get_secret_key(request)


def get_db(request: Request) -> Iterator[Session]:
    """One transaction per request, committed before the response is sent."""
    with get_ctx(request).session() as session:
        yield session


# scope="function": the transaction ends before the response goes out, so a reply never
# claims success for a commit that then fails.
Db = Annotated[Session, Depends(get_db, scope="function")]
SecretKey = Annotated[str, Depends(secret_key_dependency)]
