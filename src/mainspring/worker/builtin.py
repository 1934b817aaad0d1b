"""Built-in task types that need no user code: ``mainspring.shell``, ``.http``, ``.python``
and ``.echo``. Parameters are validated against ``worker.schemas`` on the worker itself, so a
bad run fails with a readable error in its record and the worker carries on.

Shell execution is remote code execution, so a worker refuses it unless started with
``--allow-shell`` (and, with ``--shell-allow``, only for commands on the allow-list).
"""

from __future__ import annotations

import importlib
import json
import time
from typing import Any

from celery import Task, shared_task
from celery.exceptions import Ignore

from mainspring.worker import schemas
from mainspring.worker.guard import run_store
from mainspring.worker.schemas import (
    EchoParams,
    HttpParams,
    PythonParams,
    ShellParams,
    parse_params,
)
from mainspring.worker.shell import ShellCancelledError, ShellPolicy, run_command
from mainspring.worker.task import TaskRefusedError
from mainspring.worker.tracking import run_log


class HttpStatusError(Exception):
    """The response's status is not one of the expected ones."""


class HttpRequestError(Exception):
    """The request failed before a response came (connection refused, timeout …)."""


@shared_task(bind=True, name=schemas.ECHO)
def echo(self: Task, **kwargs: Any) -> str:
    """Log and return ``message``: a harmless task for checking the whole chain."""
    params = parse_params(EchoParams, schemas.ECHO, kwargs)
    log = run_log(self)
    log.write(params.message + "\n")
    log.flush()
    return params.message


@shared_task(bind=True, name=schemas.SHELL)
def shell(self: Task, **kwargs: Any) -> dict[str, Any]:
    """Run a command; exit code 0 succeeds; output streams to the run log."""
    params = parse_params(ShellParams, schemas.SHELL, kwargs)
    conf = self.app.conf
    policy = ShellPolicy(
        allow_shell=bool(conf.get("mainspring_allow_shell")),
        prefixes=tuple(conf.get("mainspring_shell_allow") or ()),
    )
    policy.check(params, str(self.request.hostname))
    store = run_store(self.app)
    run_id = str(self.request.id)
    try:
        outcome = run_command(params, run_log(self), lambda: store.terminate_requested(run_id))
    except ShellCancelledError:
        # Recorded as REVOKED (not FAILURE), as Celery does for a terminated prefork child.
        self.send_event("task-revoked", terminated=True, signum="SIGTERM", expired=False)
        self.backend.mark_as_revoked(run_id, "terminated", request=self.request)
        raise Ignore() from None
    return {"exit_code": outcome.exit_code, "output_tail": outcome.output_tail}


@shared_task(bind=True, name=schemas.HTTP)
def http(self: Task, **kwargs: Any) -> dict[str, Any]:
    """Send one HTTP request; an unexpected status fails the run (the body is in its log)."""
    import httpx

    params = parse_params(HttpParams, schemas.HTTP, kwargs)
    body = params.body
    started = time.monotonic()
    try:
        with httpx.Client(timeout=params.timeout, follow_redirects=params.follow_redirects) as c:
            response = c.request(
                params.method,
                params.url,
                headers=params.headers,
                content=body if isinstance(body, str) else None,
                json=body if isinstance(body, dict | list) else None,
            )
    except httpx.HTTPError as exc:
        raise HttpRequestError(
            f"{params.method} {params.url}: {type(exc).__name__}: {exc}"
        ) from None
    elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    text = response.content[: params.max_body_bytes].decode(response.encoding or "utf-8", "replace")
    log = run_log(self)
    log.write(f"{params.method} {params.url} -> {response.status_code} in {elapsed_ms} ms\n")
    log.flush()
    if response.status_code not in params.expect_status:
        raise HttpStatusError(
            f"{params.method} {params.url}: status {response.status_code}: {text[:500]}"
        )
    return {
        "status": response.status_code,
        "elapsed_ms": elapsed_ms,
        "headers": dict(response.headers),
        "body": text,
        "body_truncated": len(response.content) > params.max_body_bytes,
    }


@shared_task(bind=True, name=schemas.PYTHON)
def python(self: Task, **kwargs: Any) -> Any:
    """Call ``path(*args, **kwargs)``; the return value must be JSON-serialisable."""
    params = parse_params(PythonParams, schemas.PYTHON, kwargs)
    func = _resolve(params.path)
    result = func(*params.args, **params.kwargs)
    try:
        json.dumps(result)
    except (TypeError, ValueError):
        return repr(result)
    return result


def _resolve(path: str) -> Any:
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise TaskRefusedError(f"cannot import {path!r}: {exc}") from None
    if not callable(target):
        raise TaskRefusedError(f"{path!r} is not callable")
    return target
