"""Pure pieces of authentication: roles, token hashing, redirect targets, Basic parsing."""

from __future__ import annotations

import base64
import hashlib

import pytest

from mainspring.api.auth import login_url, parse_basic_credentials, safe_next
from mainspring.core.states import Role
from mainspring.services.auth import hash_token, role_allows


@pytest.mark.parametrize(
    ("role", "minimum", "allowed"),
    [
        (Role.ADMIN, Role.ADMIN, True),
        (Role.ADMIN, Role.VIEWER, True),
        (Role.OPERATOR, Role.OPERATOR, True),
        (Role.OPERATOR, Role.ADMIN, False),
        (Role.VIEWER, Role.OPERATOR, False),
        (Role.VIEWER, Role.VIEWER, True),
    ],
)
def test_roles_are_ordered_admin_operator_viewer(role: Role, minimum: Role, allowed: bool) -> None:
    assert role_allows(role, minimum) is allowed


def test_token_hash_is_sha256_hex() -> None:
    assert hash_token("ms_abc") == hashlib.sha256(b"ms_abc").hexdigest()
    assert len(hash_token("x")) == 64


@pytest.mark.parametrize("path", ["/runs", "/runs?state=FAILURE&job_id=3", "/runs/abc-123"])
def test_relative_next_paths_are_kept(path: str) -> None:
    assert safe_next(path) == path


@pytest.mark.parametrize(
    "target",
    [
        None,
        "",
        "runs",
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "/runs\r\nSet-Cookie: x=1",
        "/\tevil",
    ],
)
def test_anything_else_falls_back_to_the_default(target: str | None) -> None:
    assert safe_next(target) == "/dashboard"


def test_login_url_quotes_the_next_path() -> None:
    assert login_url("/runs?state=FAILURE") == "/login?next=/runs%3Fstate%3DFAILURE"
    assert login_url("https://evil.example") == "/login?next=/dashboard"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def testparse_basic_credentials_split_at_the_first_colon() -> None:
    assert parse_basic_credentials(_b64("root:pa:ss")) == ("root", "pa:ss")
    assert parse_basic_credentials(_b64("名前:пароль")) == ("名前", "пароль")


@pytest.mark.parametrize("value", ["not base64!", _b64("no-colon"), "//79"])
def test_malformedparse_basic_credentials_are_rejected(value: str) -> None:
    assert parse_basic_credentials(value) is None
