from __future__ import annotations

import pytest

from mainspring.worker.schemas import (
    HttpParams,
    InvalidParamsError,
    ShellParams,
    builtin_schemas,
    parse_params,
)
from mainspring.worker.shell import CommandNotAllowedError, ShellNotAllowedError, ShellPolicy
from mainspring.worker.task import RetryPolicy


def test_every_builtin_exports_a_json_schema_for_forms() -> None:
    schemas = builtin_schemas()
    assert set(schemas) == {
        "mainspring.shell",
        "mainspring.http",
        "mainspring.python",
        "mainspring.echo",
    }
    assert schemas["mainspring.shell"]["properties"]["timeout"]["anyOf"][0]["exclusiveMinimum"] == 0
    assert "url" in schemas["mainspring.http"]["required"]


def test_shell_needs_exactly_one_of_command_or_script() -> None:
    assert ShellParams(command=["ls", "-l"]).argv() == ["ls", "-l"]
    assert ShellParams(script="echo $HOME").argv() == ["/bin/sh", "-c", "echo $HOME"]
    for bad in ({}, {"command": ["ls"], "script": "ls"}, {"command": []}, {"comand": ["ls"]}):
        with pytest.raises(InvalidParamsError, match=r"invalid parameters for mainspring\.shell"):
            parse_params(ShellParams, "mainspring.shell", bad)


def test_http_params_are_validated_with_field_names() -> None:
    with pytest.raises(InvalidParamsError, match=r"url: .*https\?://.*; timeout"):
        parse_params(HttpParams, "mainspring.http", {"url": "ftp://x", "timeout": 0})
    params = parse_params(HttpParams, "mainspring.http", {"url": "http://x"})
    assert params.method == "GET"
    assert 204 in params.expect_status


def test_shell_is_refused_unless_allowed() -> None:
    with pytest.raises(ShellNotAllowedError, match="--allow-shell"):
        ShellPolicy(allow_shell=False).check(ShellParams(command=["true"]), "w@h")
    ShellPolicy(allow_shell=True).check(ShellParams(script="rm -rf /tmp/x; true"), "w@h")


@pytest.mark.parametrize(
    ("params", "allowed"),
    [
        ({"command": ["systemctl", "status", "nginx"]}, True),
        ({"script": "systemctl status nginx"}, True),
        ({"command": ["systemctl", "stop", "nginx"]}, False),
        ({"script": "systemctl status nginx; reboot"}, False),
        ({"script": "systemctl status $(reboot)"}, False),
        ({"command": ["/usr/local/bin/backup.sh"]}, True),
        ({"command": ["/usr/local/bin/backup.sh.evil"]}, False),
    ],
)
def test_allow_list_matches_whole_leading_words(params: dict[str, object], allowed: bool) -> None:
    policy = ShellPolicy(True, ("systemctl status", "/usr/local/bin/backup.sh"))
    shell = ShellParams.model_validate(params)
    if allowed:
        policy.check(shell, "w@h")
    else:
        with pytest.raises(CommandNotAllowedError, match="not allowed on worker w@h"):
            policy.check(shell, "w@h")


def test_retry_delays_grow_exponentially_within_jitter_and_cap() -> None:
    exact = RetryPolicy(retries=5, backoff=1, backoff_max=5, jitter=False)
    assert [exact.delay(n) for n in range(5)] == [1, 2, 4, 5, 5]
    jittered = RetryPolicy(retries=5, backoff=2, backoff_max=600)
    for n in range(5):
        assert 2 * 2**n / 2 <= jittered.delay(n) <= 2 * 2**n
