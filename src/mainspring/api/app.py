"""``create_app``: the one web process, serving the JSON API, the console and its static files."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import swagger_ui_bundle  # type: ignore[import-untyped]
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware

import mainspring
from mainspring.api import (
    alerts,
    audit,
    flower,
    health,
    jobs,
    jobs_code,
    queues,
    runs,
    stats,
    tasks,
    tokens,
    users,
    workers,
    workflows,
)
from mainspring.api.auth import SESSION_COOKIE, SESSION_MAX_AGE_S
from mainspring.api.errors import install_error_handlers, is_api_request
from mainspring.api.schemas import Health
from mainspring.api.submitter import Submitter
from mainspring.console import login, pages
from mainspring.console.render import STATIC_DIR, make_templates
from mainspring.context import AppContext
from mainspring.services.ratelimit import LoginRateLimiter

API_PREFIX = "/api/v1"
DOCS_PATH = "/api/docs"

# Console pages load only our own files; no inline script, no framing, forms post here only.
CONSOLE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def create_app(ctx: AppContext) -> FastAPI:
    """Build the web app around an open context; nothing here reads the environment."""
    settings = ctx.settings.with_secret_key()
    if not settings.secret_key:
        raise AssertionError("with_secret_key() returned no key")
    app = FastAPI(
        lifespan=_lifespan,
        title="Mainspring",
        version=mainspring.__version__,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    app.state.settings = settings
    app.state.secret_key = settings.secret_key
    app.state.templates = make_templates(settings.timezone)
    app.state.login_limiter = LoginRateLimiter()
    app.state.submitter = Submitter(ctx)
    app.state.token_lookups = {}  # token hash -> the look-up in flight (api.auth)

    api = APIRouter(prefix=API_PREFIX)
    api.include_router(runs.router)
    api.include_router(jobs_code.router)  # before jobs: /jobs/export is not a job id
    api.include_router(jobs.router)
    api.include_router(users.router)
    api.include_router(tokens.router)
    api.include_router(audit.router)
    api.include_router(workers.router)
    api.include_router(queues.router)
    api.include_router(stats.router)
    api.include_router(workflows.router)
    api.include_router(workflows.jobs_router)
    api.include_router(alerts.router)
    # Routes are tried in order and each miss costs: the hot submission routes come first
    # (``/api/v1/tasks...``, then Flower's ``/api/...``; no other path overlaps them).
    app.include_router(tasks.router, prefix=API_PREFIX)
    app.include_router(flower.router)
    app.include_router(api)
    app.include_router(health.router)
    app.include_router(login.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    mount_api_docs(app)

    install_error_handlers(app)
    app.middleware("http")(security_headers)
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key,
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE_S,
        same_site="lax",
        https_only=settings.cookie_secure,
    )
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Close what requests opened lazily (the submission batcher, then the Celery app and
    its broker pool) on shutdown."""
    yield
    await run_in_threadpool(app.state.submitter.close)
    celery = getattr(app.state, "celery", None)
    if celery is not None:
        celery.close()


def mount_api_docs(app: FastAPI) -> None:
    """Swagger UI served from the installed ``swagger-ui-bundle`` wheel: no CDN, so the docs
    work in a closed network."""
    app.mount(
        f"{DOCS_PATH}/assets",
        StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
        name="swagger-assets",
    )

    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=f"{API_PREFIX}/openapi.json",
            title="Mainspring API",
            swagger_js_url=f"{DOCS_PATH}/assets/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_PATH}/assets/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_PATH}/assets/favicon-32x32.png",
        )

    app.add_api_route(DOCS_PATH, docs, methods=["GET"], include_in_schema=False)


def healthz() -> Health:
    """Liveness for load balancers and ``mainspring up``: no auth, no database."""
    return Health(status="ok")


async def security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Headers every answer gets; personal pages and API answers are never cached.

    (Kept a ``BaseHTTPMiddleware``: its cancelling of the app when the client goes away is
    what stops a log follow's generator under the test client.)"""
    response = await call_next(request)
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    path = request.url.path
    if path.startswith("/static/"):
        return response
    headers.setdefault("Cache-Control", "no-store")
    if not is_api_request(request) and not path.startswith(DOCS_PATH):
        headers.setdefault("Content-Security-Policy", CONSOLE_CSP)
        headers.setdefault("X-Frame-Options", "DENY")
    return response
