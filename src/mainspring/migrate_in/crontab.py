"""Reading a crontab (cron(5)) into ``mainspring.shell`` jobs with the same schedule.

A line is split into its five time fields (or an ``@macro``), the user field of the system
format (``/etc/crontab``, ``/etc/cron.d``) and the command; the schedule is then judged by the
scheduler's own parser (``core.triggers.parse_trigger``), so what imports is what will run.
Where croniter reads a field differently from cron (see ``cron_caveat``) the line is skipped
with the reason rather than imported with another schedule.

Environment lines apply to the lines after them: ``SHELL`` picks the interpreter, ``CRON_TZ``
the time zone of the schedule, ``MAILTO``/``MAILFROM`` and cronie's mail and delay settings
are noted (not carried over); every other variable goes to the command's environment.
``%`` follows cron: the command ends at the first unescaped ``%``, the rest (each ``%`` a
newline) is its standard input, fed by a here-document; ``\\%`` is a literal ``%``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from mainspring.core.triggers import MACROS, parse_trigger, zone
from mainspring.errors import ValidationError
from mainspring.migrate_in import Imported, Problem, slug
from mainspring.services.jobs import JobSpec
from mainspring.services.jobs_code import normalized
from mainspring.worker.schemas import SHELL, ShellParams, describe

ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
NOTED_ENV = {
    "MAILTO": "cron mailed the output there; Mainspring keeps it in the run log instead "
    "(set up notifications for failures)",
    "MAILFROM": "cron's mail sender is not used",
    "CONTENT_TYPE": "cron's mail settings are not used",
    "CONTENT_TRANSFER_ENCODING": "cron's mail settings are not used",
    "RANDOM_DELAY": "cronie's random delay is not carried over (set the job's jitter_ms)",
}
DEFAULT_SHELL = "/bin/sh"
STDIN_MARK = "MAINSPRING_CRON_STDIN"
_ELEMENT = re.compile(r"^(?:\*|(?P<a>\w+)(?:-(?P<b>\w+))?)(?:/(?P<step>\d+))?$")
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")


@dataclass(frozen=True)
class CrontabOptions:
    """Where and how the imported jobs run, and how they are named."""

    source: str  # the host or file the crontab comes from, used in names and tags
    timezone: str
    queue: str
    worker: str | None = None
    prefix: str = "cron"
    system: bool = False  # lines carry a user field (/etc/crontab, /etc/cron.d)
    enabled: bool = True
    origin: str = ""  # the file, for descriptions (default: ``source``)


@dataclass
class _Env:
    values: dict[str, str] = field(default_factory=dict)
    noted: dict[str, str] = field(default_factory=dict)
    shell: str = DEFAULT_SHELL
    timezone: str | None = None


def read_crontab(text: str, options: CrontabOptions) -> Imported:
    """Every schedule line as a job spec, or as a skipped line with its number and reason."""
    result = Imported()
    env = _Env()
    ordinal = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"line {number}"
        if any(ord(ch) < 32 and ch != "\t" for ch in line):
            result.skipped.append(Problem(where, "contains control characters"))
            continue
        if ENV_LINE.match(line):
            _set_env(env, line, where, result)
            continue
        ordinal += 1
        try:
            result.specs.append(_job(line, number, ordinal, env, options))
        except ValidationError as exc:
            result.skipped.append(Problem(where, exc.message))
    return result


def _set_env(env: _Env, line: str, where: str, result: Imported) -> None:
    match = ENV_LINE.match(line)
    assert match is not None
    name, value = match.group(1), match.group(2).strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    if name == "SHELL":
        env.shell = value or DEFAULT_SHELL
    elif name == "CRON_TZ":
        try:
            zone(value)
        except ValidationError:
            result.skipped.append(Problem(where, f"CRON_TZ {value!r} is not an IANA time zone"))
            return
        env.timezone = value
    elif name in NOTED_ENV:
        env.noted[name] = value
        result.notes.append(Problem(where, f"{name}={value}: {NOTED_ENV[name]}"))
    else:
        env.values[name] = value


def _split(line: str, system: bool) -> tuple[str, str | None, str]:
    """(schedule, user, command): five fields or a macro, the user field, the rest."""
    fields = 1 if line.startswith("@") else 5
    parts = line.split(None, fields + (1 if system else 0))
    if len(parts) <= fields + (1 if system else 0):
        what = "a user and a command" if system else "a command"
        when = "an @macro" if fields == 1 else "five time fields"
        raise ValidationError("line", f"needs {when} and then {what}")
    schedule = " ".join(parts[:fields])
    user = parts[fields] if system else None
    return schedule, user, parts[-1]


def _job(line: str, number: int, ordinal: int, env: _Env, options: CrontabOptions) -> JobSpec:
    schedule, user, command = _split(line, options.system)
    _check_schedule(schedule)
    command, stdin = split_percent(command)
    if not command.strip():
        raise ValidationError("command", "no command before the first '%'")
    params = _params(with_stdin(command, stdin), env)
    src = slug(options.source)
    tags = ["crontab", f"crontab:{src}"[:64]] + ([f"cron-user:{user}"[:64]] if user else [])
    described = [f"Imported from crontab {options.origin or options.source} line {number}: {line}"]
    if user:
        described.append(f"cron ran it as user {user!r}; it now runs as the worker's user.")
    described += [f"{k}={v} was set: {NOTED_ENV[k]}." for k, v in env.noted.items()]
    spec = JobSpec(
        name=f"{slug(options.prefix)}-{src}-{ordinal}-{command_slug(command)}",
        task=SHELL,
        trigger={"kind": "cron", "expr": schedule},
        timezone=env.timezone or options.timezone,
        kwargs=params,
        queue=options.queue,
        target_worker=options.worker,
        description="\n".join(described)[:10_000],
        tags=list(dict.fromkeys(tags)),
        enabled=options.enabled,
    )
    normalized(spec)  # every check a job gets when stored
    return spec


def _params(script: str, env: _Env) -> dict[str, Any]:
    """The shell task's parameters: the script under cron's ``SHELL`` with its variables."""
    params: dict[str, Any] = (
        {"script": script} if env.shell == DEFAULT_SHELL else {"command": [env.shell, "-c", script]}
    )
    if env.values:
        params["env"] = dict(env.values)
    try:
        ShellParams.model_validate(params)
    except PydanticValidationError as exc:
        raise ValidationError("command", describe(exc)) from None
    return params


def command_slug(command: str) -> str:
    """The command's words for a job name: its program without the directory, no
    redirections (``/usr/local/bin/backup.sh --full >> log`` → ``backup.sh-full``)."""
    words = re.split(r"[<>]", command, maxsplit=1)[0].split()  # not its redirections
    if words:
        words[0] = words[0].rsplit("/", 1)[-1] or words[0]
    return slug(" ".join(words))


def _check_schedule(schedule: str) -> None:
    if schedule.startswith("@"):
        if schedule.lower() == "@reboot":
            raise ValidationError(
                "@reboot",
                "@reboot runs once at boot, which Mainspring cannot schedule: "
                "start it from the host's init system (a systemd unit) instead",
            )
        if schedule.lower() not in MACROS:
            raise ValidationError("schedule", f"unknown macro {schedule!r}")
    else:
        caveat = cron_caveat(schedule.split())
        if caveat:
            raise ValidationError("schedule", caveat)
    parse_trigger({"kind": "cron", "expr": schedule})


def _value(token: str, names: dict[str, int]) -> int | None:
    if token.isdigit():
        return int(token)
    return names.get(token.lower())


def cron_caveat(fields: list[str]) -> str | None:
    """Why croniter would run these five fields at other times than cron, or None.

    Three known differences: a range that does not go upwards (cron refuses it, croniter
    wraps or, for ``5-5``, takes every value); a day-of-week step from a single day (``1/2``:
    cron counts to 7, croniter to 6); and cron's rule that a day-of-month or day-of-week field
    starting with ``*`` makes a day match only when both fields match (croniter: either).
    """
    for label, value in zip(_FIELDS, fields, strict=True):
        names = _DAYS if label == "day-of-week" else _MONTHS if label == "month" else {}
        for element in value.split(","):
            match = _ELEMENT.match(element)
            if match is None or match["a"] is None:
                continue
            low, high = _value(match["a"], names), _value(match["b"] or "", names)
            if match["b"] is not None and low is not None and high is not None and low >= high:
                better = f"write {match['a']!r}" if low == high else "cron refuses it"
                return f"{label} {element!r}: a range must go upwards ({better})"
            if label == "day-of-week" and match["b"] is None and match["step"]:
                example = f"{match['a']}-7/{match['step']}"
                return f"day-of-week {element!r}: write it as a range, e.g. {example!r}"
    dom, dow = fields[2], fields[4]
    if (dom.startswith("*") and dom != "*" and dow != "*") or (
        dow.startswith("*") and dow != "*" and dom != "*"
    ):
        return (
            f"day-of-month {dom!r} with day-of-week {dow!r}: cron runs it on days matching both "
            "(a field starting with '*'), Mainspring's cron on days matching either; rewrite it"
        )
    return None


def split_percent(command: str) -> tuple[str, str | None]:
    """cron's ``%`` rule: (the command, its standard input or None). In the command ``\\%``
    is ``%``; in the input each unescaped ``%`` is a newline and the input ends with one."""
    out: list[str] = []
    escaped = False
    for i, ch in enumerate(command):
        if escaped and ch == "%":
            out[-1] = "%"
        elif not escaped and ch == "%":
            return "".join(out), _stdin(command[i + 1 :])
        else:
            out.append(ch)
        escaped = not escaped and ch == "\\"
    return "".join(out), None


def _stdin(data: str) -> str:
    out: list[str] = []
    escaped = False
    for ch in data:
        if escaped:
            if ch != "%":
                out.append("\\")
        elif ch == "%":
            ch = "\n"
        escaped = ch == "\\"  # as cron: a backslash always escapes the next character
        if not escaped:
            out.append(ch)
    if escaped:
        out.append("\\")
    text = "".join(out)
    return text if not text or text.endswith("\n") else text + "\n"


def with_stdin(command: str, stdin: str | None) -> str:
    """The script: ``command`` alone, or in a group fed ``stdin`` by a quoted here-document
    (no expansion, as cron feeds it raw)."""
    if stdin is None:
        return command
    mark, n = STDIN_MARK, 0
    while mark in stdin.splitlines():
        n += 1
        mark = f"{STDIN_MARK}_{n}"
    return f"{{\n{command}\n}} <<'{mark}'\n{stdin}{mark}"
