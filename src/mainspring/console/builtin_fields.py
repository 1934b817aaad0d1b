"""Form fields for the built-in tasks' parameters, made from their JSON Schema.

Each parameter of ``worker.schemas.BUILTIN_PARAMS`` becomes one field whose kind follows its
type: a line of text, a number, a checkbox, a choice, one list item per line, ``KEY=VALUE``
lines, or JSON. An empty field means "the default". The values are then checked by the
task's own pydantic model, so the form can never accept what the worker would refuse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from mainspring.console.i18n import N_
from mainspring.worker.schemas import BUILTIN_PARAMS

LONG_TEXT = frozenset({"script"})
KEY_VALUE_HELP = N_("write one KEY=VALUE per line")
# Field titles and descriptions of the built-in schemas, marked for the translators.
_MESSAGES = (
    N_("Command"), N_("argv, no shell"), N_("Script"), N_("run with /bin/sh -c"),
    N_("Cwd"), N_("working directory"), N_("Env"), N_("extra environment"),
    N_("Timeout"), N_("seconds"), N_("Url"), N_("http:// or https:// URL"), N_("Method"),
    N_("Headers"), N_("Body"), N_("text, or JSON for an object or array"),
    N_("Expect Status"), N_("statuses that mean success"), N_("Follow Redirects"),
    N_("Max Body Bytes"), N_("Path"), N_("dotted path of a callable"), N_("Args"),
    N_("Kwargs"), N_("Message"),
)  # fmt: skip


@dataclass(frozen=True)
class ParamField:
    """One parameter as a form field; ``input_name`` is unique across all built-in tasks."""

    task: str
    name: str
    kind: str  # text, long_text, number, integer, bool, choice, lines, int_list, pairs, json
    title: str
    description: str
    required: bool
    choices: tuple[str, ...] = ()
    default: Any = None

    @property
    def input_name(self) -> str:
        return f"param:{self.task}:{self.name}"


def _types(prop: dict[str, Any]) -> list[dict[str, Any]]:
    options = prop.get("anyOf", [prop])
    return [o for o in options if o.get("type") != "null"]


def _kind(name: str, prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return "choice"
    options = _types(prop)
    if len(options) != 1:
        return "json"
    option = options[0]
    kind = option.get("type")
    if kind == "string":
        return "long_text" if name in LONG_TEXT else "text"
    if kind in ("number", "integer", "boolean"):
        return "bool" if kind == "boolean" else str(kind)
    items = option.get("items", {}).get("type")
    if kind == "array" and items in ("string", "integer"):
        return "lines" if items == "string" else "int_list"
    if kind == "object" and option.get("additionalProperties") == {"type": "string"}:
        return "pairs"
    return "json"


def param_fields(task: str) -> list[ParamField]:
    """The form fields of built-in ``task`` (none for other tasks)."""
    model = BUILTIN_PARAMS.get(task)
    if model is None:
        return []
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    fields = []
    for name, prop in schema["properties"].items():
        fields.append(
            ParamField(
                task=task,
                name=name,
                kind=_kind(name, prop),
                title=str(prop.get("title", name)),
                description=str(prop.get("description", "")),
                required=name in required,
                choices=tuple(str(c) for c in prop.get("enum", ())),
                default=prop.get("default"),
            )
        )
    return fields


def all_param_fields() -> dict[str, list[ParamField]]:
    return {task: param_fields(task) for task in BUILTIN_PARAMS}


def _parse_value(field: ParamField, raw: str) -> Any:
    """The typed value of a non-empty field; ValueError says what is wrong."""
    text = raw.strip()
    if field.kind in ("text", "choice"):
        return text
    if field.kind == "long_text":
        return raw
    if field.kind == "number":
        return float(text)
    if field.kind == "integer":
        return int(text)
    if field.kind == "lines":
        return [line for line in raw.splitlines() if line.strip()]
    if field.kind == "int_list":
        return [int(part) for part in text.replace(",", " ").split()]
    if field.kind == "pairs":
        return dict(_pair(line) for line in raw.splitlines() if line.strip())
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if field.name == "body":  # text, or JSON for an object or array
            return raw
        raise ValueError("is not valid JSON") from None


def _pair(line: str) -> tuple[str, str]:
    key, sep, value = line.partition("=")
    if not sep or not key.strip():
        raise ValueError(KEY_VALUE_HELP)
    return key.strip(), value


def parse_params(task: str, form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The built-in task's kwargs from the form, and errors by input name."""
    kwargs: dict[str, Any] = {}
    errors: dict[str, str] = {}
    fields = param_fields(task)
    for field in fields:
        if field.kind == "bool":
            kwargs[field.name] = form.get(field.input_name) == "on"
            continue
        raw = form.get(field.input_name, "")
        if not raw.strip():
            continue
        try:
            kwargs[field.name] = _parse_value(field, raw)
        except ValueError as exc:
            errors[field.input_name] = str(exc) if str(exc) == KEY_VALUE_HELP else _bad_value(field)
    if errors:
        return kwargs, errors
    try:
        BUILTIN_PARAMS[task].model_validate(kwargs)
    except PydanticValidationError as exc:
        by_name = {f.name: f.input_name for f in fields}
        for err in exc.errors():
            loc = [str(part) for part in err["loc"]]
            target = by_name.get(loc[0], f"param:{task}:") if loc else f"param:{task}:"
            errors.setdefault(target, str(err["msg"]))
    return kwargs, errors


_BAD_VALUE = {
    "number": N_("must be a number"),
    "integer": N_("must be a whole number"),
    "int_list": N_("whole numbers separated by commas"),
    "json": N_("is not valid JSON"),
}


def _bad_value(field: ParamField) -> str:
    return _BAD_VALUE.get(field.kind, N_("is not a valid value"))


def form_values(task: str, kwargs: dict[str, Any]) -> dict[str, str]:
    """A built-in task's stored kwargs as the form's input values."""
    values: dict[str, str] = {}
    for field in param_fields(task):
        if field.name not in kwargs:
            continue
        value = kwargs[field.name]
        values[field.input_name] = _as_text(field, value)
    return values


def _as_text(field: ParamField, value: Any) -> str:
    if value is None:
        return ""
    if field.kind == "bool":
        return "on" if value else ""
    if field.kind == "lines" and isinstance(value, list):
        return "\n".join(str(v) for v in value)
    if field.kind == "int_list" and isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if field.kind == "pairs" and isinstance(value, dict):
        return "\n".join(f"{k}={v}" for k, v in value.items())
    if field.kind in ("text", "long_text", "choice", "number", "integer"):
        return str(value)
    if isinstance(value, str) and field.name == "body":
        return value
    return json.dumps(value, ensure_ascii=False)
