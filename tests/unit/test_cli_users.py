"""``mainspring users`` and ``mainspring tokens`` against a SQLite file in a temp directory."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner, Result

from mainspring.cli.main import cli, main
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import ApiToken, AuditEntry, User
from mainspring.errors import ConflictError, NotFoundError, ValidationError
from mainspring.services import users as user_service
from mainspring.services.auth import hash_token
from mainspring.settings import Settings

Run = Callable[..., Result]


@pytest.fixture(autouse=True)
def fast_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        user_service, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    )


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MAINSPRING_DATA_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def run(data: Path) -> Run:
    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=input)

    return invoke


def _db(data: Path) -> AppContext:
    return AppContext.open(Settings(data_dir=data))


def _users(data: Path) -> dict[str, tuple[str, bool]]:
    ctx = _db(data)
    with ctx.session() as s:
        found = {u.username: (u.role, u.is_active) for u in s.query(User)}
    ctx.close()
    return found


def _login_ok(data: Path, name: str, password: str) -> bool:
    ctx = _db(data)
    with ctx.session() as s:
        ok = user_service.authenticate(s, name, password) is not None
    ctx.close()
    return ok


def test_add_asks_for_the_password_twice(run: Run, data: Path) -> None:
    result = run("users", "add", "alice", "--role", "operator", input="pw-123456\npw-123456\n")
    assert result.exit_code == 0, result.output
    assert "created user 'alice'" in result.stdout
    assert _users(data) == {"alice": ("operator", True)}
    assert _login_ok(data, "alice", "pw-123456")


def test_add_asks_again_when_the_two_passwords_differ(run: Run, data: Path) -> None:
    typed = "pw-123456\npw-999999\npw-abcdef\npw-abcdef\n"
    result = run("users", "add", "alice", "--role", "viewer", input=typed)
    assert result.exit_code == 0
    assert "do not match" in result.output
    assert _login_ok(data, "alice", "pw-abcdef")


def test_add_reads_one_line_with_password_stdin(run: Run, data: Path) -> None:
    result = run("users", "add", "bot", "--role", "viewer", "--password-stdin", input="s3cret-pw\n")
    assert result.exit_code == 0
    assert _login_ok(data, "bot", "s3cret-pw")


def test_add_is_audited_as_the_cli(run: Run, data: Path) -> None:
    run("users", "add", "bot", "--role", "viewer", "--password-stdin", input="s3cret-pw\n")
    ctx = _db(data)
    with ctx.session() as s:
        entry = s.query(AuditEntry).one()
        assert entry.actor.startswith("cli:")
        assert (entry.action, entry.object_type, entry.source_ip) == ("create", "user", None)
        assert "s3cret-pw" not in str(entry.changes)
    ctx.close()


@pytest.mark.parametrize(
    ("args", "stdin", "error", "message"),
    [
        (["bob", "--role", "viewer"], "short\n", ValidationError, "password: must be at least 8"),
        (["a:b", "--role", "viewer"], "long-enough\n", ValidationError, "username:"),
        (["bob", "--role", "admin"], "\n", ValidationError, "password:"),
    ],
)
def test_add_refuses_bad_input(
    run: Run, data: Path, args: list[str], stdin: str, error: type, message: str
) -> None:
    result = run("users", "add", *args, "--password-stdin", input=stdin)
    assert isinstance(result.exception, error)
    assert message in str(result.exception)
    assert _users(data) == {}


def test_unknown_role_is_a_usage_error(run: Run) -> None:
    result = run("users", "add", "bob", "--role", "root", "--password-stdin", input="x" * 9)
    assert result.exit_code == 2
    assert "'root' is not one of" in result.output


def test_adding_an_existing_name_is_a_conflict(run: Run) -> None:
    run("users", "add", "bob", "--role", "viewer", "--password-stdin", input="long-enough\n")
    result = run("users", "add", "bob", "--role", "admin", "--password-stdin", input="x" * 9)
    assert isinstance(result.exception, ConflictError)


def test_list_shows_every_user(run: Run) -> None:
    for name, role in (("zed", "viewer"), ("amy", "admin")):
        run("users", "add", name, "--role", role, "--password-stdin", input="long-enough\n")
    lines = run("users", "list").stdout.splitlines()
    assert lines[0].split()[:4] == ["ID", "NAME", "ROLE", "ACTIVE"]
    assert [line.split()[1:4] for line in lines[1:]] == [
        ["amy", "admin", "yes"],
        ["zed", "viewer", "yes"],
    ]


def test_passwd_sets_a_new_password(run: Run, data: Path) -> None:
    run("users", "add", "bob", "--role", "viewer", "--password-stdin", input="old-password\n")
    result = run("users", "passwd", "bob", input="new-password\nnew-password\n")
    assert result.exit_code == 0
    assert _login_ok(data, "bob", "new-password")
    assert not _login_ok(data, "bob", "old-password")


def test_passwd_of_unknown_user_is_not_found(run: Run) -> None:
    result = run("users", "passwd", "ghost", "--password-stdin", input="new-password\n")
    assert isinstance(result.exception, NotFoundError)
    assert "mainspring users list" in str(result.exception)


def test_delete_asks_first_and_keeps_the_user_on_no(run: Run, data: Path) -> None:
    run("users", "add", "bob", "--role", "viewer", "--password-stdin", input="long-enough\n")
    declined = run("users", "delete", "bob", input="n\n")
    assert declined.exit_code == 1
    assert "bob" in _users(data)
    assert run("users", "delete", "bob", "--yes").exit_code == 0
    assert _users(data) == {}


def test_the_last_active_admin_cannot_be_deleted(run: Run, data: Path) -> None:
    run("users", "add", "root", "--role", "admin", "--password-stdin", input="long-enough\n")
    result = run("users", "delete", "root", "--yes")
    assert isinstance(result.exception, ConflictError)
    assert "last active admin" in str(result.exception)
    assert "root" in _users(data)


def test_errors_are_one_line_through_main(
    data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    with pytest.raises(SystemExit) as exited:
        main(["users", "add", "bob", "--role", "viewer", "--password-stdin"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err == "error: password: must be at least 8 characters\n"


# --- tokens ---------------------------------------------------------------------------------


@pytest.fixture
def bob(run: Run) -> str:
    run("users", "add", "bob", "--role", "operator", "--password-stdin", input="long-enough\n")
    return "bob"


def test_tokens_create_prints_only_the_secret_and_stores_its_hash(
    run: Run, data: Path, bob: str
) -> None:
    result = run("tokens", "create", "--user", bob, "--name", "deploy", "--expires-days", "30")
    assert result.exit_code == 0
    secret = result.stdout.strip()
    assert secret.startswith("ms_")
    assert "\n" not in secret
    assert "not shown again" in result.stderr
    assert "role operator" in result.stderr
    ctx = _db(data)
    with ctx.session() as s:
        token = s.query(ApiToken).one()
        assert token.token_hash == hash_token(secret)
        assert token.expires_at is not None
    ctx.close()


def test_tokens_create_caps_the_role_at_the_owners(run: Run, bob: str) -> None:
    result = run("tokens", "create", "--user", bob, "--name", "x", "--role", "admin")
    assert isinstance(result.exception, ValidationError)
    assert result.exception.field == "role"
    ok = run("tokens", "create", "--user", bob, "--name", "x", "--role", "viewer")
    assert "role viewer" in ok.stderr


def test_tokens_for_unknown_user_is_not_found(run: Run) -> None:
    result = run("tokens", "create", "--user", "ghost", "--name", "x")
    assert isinstance(result.exception, NotFoundError)


def test_tokens_list_and_revoke(run: Run, data: Path, bob: str) -> None:
    secret = run("tokens", "create", "--user", bob, "--name", "deploy").stdout.strip()
    run("users", "add", "amy", "--role", "viewer", "--password-stdin", input="long-enough\n")
    run("tokens", "create", "--user", "amy", "--name", "other")
    listing = run("tokens", "list").stdout
    assert secret not in listing
    assert secret[:12] in listing
    only_bob = run("tokens", "list", "--user", bob).stdout.splitlines()
    assert len(only_bob) == 2
    assert "deploy" in only_bob[1]
    assert "active" in only_bob[1]
    token_id = only_bob[1].split()[0]
    assert run("tokens", "revoke", token_id).stdout == f"token {token_id} revoked\n"
    assert "revoked" in run("tokens", "list", "--user", bob).stdout.splitlines()[1]
    ctx = _db(data)
    with ctx.session() as s:
        assert s.query(AuditEntry).filter_by(action="revoke").count() == 1
    ctx.close()


@pytest.mark.parametrize(("token_id", "code"), [("999", 1), ("0", 2), ("abc", 2)])
def test_revoking_a_missing_or_bad_id_fails(run: Run, token_id: str, code: int) -> None:
    result = run("tokens", "revoke", token_id)
    assert result.exit_code == code
    if code == 1:
        assert isinstance(result.exception, NotFoundError)


def test_roles_offered_match_the_role_enum(run: Run) -> None:
    help_text = run("users", "add", "--help").output
    assert all(role.value in help_text for role in Role)
