"""Masking secrets in stored task arguments, by key name. Pure and idempotent.

Task arguments end up in the run history that every viewer of the console can read, so values
under keys that look like credentials (``password``, ``token``, ``secret``, ``api_key``…) are
replaced by ``***`` before they are stored. Celery events carry arguments as ``repr`` strings;
those are parsed back when they are Python literals and masked with a pattern otherwise.
"""

from __future__ import annotations

import ast
import re
from typing import Any

MASK = "***"
SECRET_WORDS = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "private_key",
    "credential",
    "authorization",
    "cookie",
    "session",
    "signature",
)
EXACT_SECRET_KEYS = frozenset({"auth", "pass", "key"})
_REPR_PAIR = re.compile(
    r"""(?P<key>['"](?P<name>[^'"]*)['"]\s*:\s*)(?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^,}\]]+)"""
)


def is_secret_key(key: object) -> bool:
    """Whether a mapping key names a credential (case-insensitive substring match)."""
    if not isinstance(key, str):
        return False
    lowered = key.lower().replace("-", "_")
    if lowered in EXACT_SECRET_KEYS:
        return True
    return any(word in lowered for word in SECRET_WORDS)


def mask_value(value: Any) -> Any:
    """``value`` with every entry under a secret-looking key replaced, at any depth."""
    if isinstance(value, dict):
        return {k: MASK if is_secret_key(k) else mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        masked = [mask_value(v) for v in value]
        return masked if isinstance(value, list) else tuple(masked)
    return value


def mask_repr(text: str) -> str:
    """A Celery argument ``repr`` with secret values masked; re-rendered when it parses."""
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return _REPR_PAIR.sub(_mask_pair, text)
    masked = mask_value(parsed)
    return text if masked == parsed else repr(masked)


def _mask_pair(match: re.Match[str]) -> str:
    if is_secret_key(match.group("name")):
        return f"{match.group('key')}'{MASK}'"
    return match.group(0)
