"""A run's exception as type and message, from what Celery reports.

Celery's ``task-failed`` event carries ``repr(exc)`` (``ValueError('boom')``) and, for errors
raised outside the task body (a hard time limit, a lost pool process), a wrapper whose repr says
nothing (``ExceptionWithTraceback()``); the traceback's last line then names the real one.
"""

from __future__ import annotations

import ast
import re

REPR = re.compile(r"^([A-Za-z_][\w.]*)\((.*)\)$", re.DOTALL)
LAST_LINE = re.compile(r"^([A-Za-z_][\w.]*): ?(.*)$", re.DOTALL)
WRAPPERS = frozenset({"ExceptionWithTraceback", "ExceptionInfo", "EncodeError"})


def split_exception(text: str, traceback: str | None = None) -> tuple[str | None, str]:
    """``(type name, message)``; the message is the exception's argument(s) as a user reads
    them (``boom``, not ``ValueError('boom')``)."""
    match = REPR.match(text.strip())
    if match and match.group(1).rsplit(".", 1)[-1] not in WRAPPERS:
        return match.group(1).rsplit(".", 1)[-1], _arguments(match.group(2))
    from_traceback = _from_traceback(traceback)
    if from_traceback is not None:
        return from_traceback
    return (match.group(1) if match else None), text


def _arguments(inner: str) -> str:
    """``'boom'`` → ``boom``; several or non-literal arguments stay as written."""
    try:
        value = ast.literal_eval(inner) if inner else ""
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return inner
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _from_traceback(traceback: str | None) -> tuple[str, str] | None:
    lines = [line for line in (traceback or "").splitlines() if line.strip()]
    if not lines or lines[-1].startswith(" "):
        return None
    match = LAST_LINE.match(lines[-1])
    if match is None:
        return None
    name = match.group(1).rsplit(".", 1)[-1]
    repr_inside = REPR.match(match.group(2))
    if repr_inside and repr_inside.group(1).rsplit(".", 1)[-1] == name:
        return name, _arguments(repr_inside.group(2))
    return name, match.group(2)
