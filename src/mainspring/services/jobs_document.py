"""The jobs-as-code document: its format (``JobDocument``, with a JSON Schema), reading it
from YAML or JSON with every problem named by its place, and writing a stored definition
back as a document entry (``entry``) in a stable, human-editable form.

YAML is read with the safe loader (no Python objects), and a key given twice is an error
rather than YAML's silent last-one-wins. Documented in docs/jobs-as-code.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic import ValidationError as PydanticValidationError

from mainspring.core.states import MisfirePolicy, OverlapPolicy
from mainspring.errors import ValidationError
from mainspring.services import jobs as job_service
from mainspring.services.job_queries import JobFilter
from mainspring.worker.task import RetryPolicy

DOCUMENT_VERSION = 1
MANAGED_TAG = "managed-by:apply"
ORDER = (
    "name", "description", "task", "trigger", "timezone", "queue", "target_worker", "broadcast",
    "args", "kwargs", "options", "enabled", "tags", "start_at", "end_at", "max_runs",
    "jitter_ms", "misfire_policy", "misfire_grace_s", "overlap_policy", "data_window",
)  # fmt: skip
TRIGGER_KINDS = ("cron", "interval", "once", "manual")
ALWAYS = frozenset({"name", "task", "trigger", "timezone", "queue"})
DEFAULTS: dict[str, Any] = {
    "description": "", "target_worker": None, "broadcast": False, "args": [], "kwargs": {},
    "options": {}, "enabled": True, "tags": [], "start_at": None, "end_at": None,
    "max_runs": None, "jitter_ms": 0, "misfire_policy": MisfirePolicy.RUN_ONCE.value,
    "misfire_grace_s": 60, "overlap_policy": OverlapPolicy.ALLOW.value, "data_window": None,
}  # fmt: skip


def _finite(value: Any) -> Any:
    """Arguments are stored as JSON, which has no NaN or infinities."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and infinite numbers are not JSON")
    for item in (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    ):
        _finite(item)
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CronTrigger(_Strict):
    """Five fields, or six with leading seconds; macros such as ``@daily``."""

    kind: Literal["cron"]
    expr: str = Field(min_length=1, max_length=200)
    v: Literal[1] | None = None


class IntervalTrigger(_Strict):
    """Every ``every_ms``; ``anchor`` is the instant the grid starts from (kept when omitted
    on an existing job, now for a new one)."""

    kind: Literal["interval"]
    every_ms: int = Field(ge=10)
    anchor: AwareDatetime | None = None
    v: Literal[1] | None = None


class OnceTrigger(_Strict):
    kind: Literal["once"]
    at: AwareDatetime
    v: Literal[1] | None = None


class ManualTrigger(_Strict):
    kind: Literal["manual"]
    v: Literal[1] | None = None


class DataWindow(_Strict):
    lookback_s: int | None = Field(default=None, ge=1)
    as_kwargs: bool = False
    v: Literal[1] | None = None


class JobOptions(_Strict):
    """How each run executes (where it runs is the job's ``queue``/``target_worker``)."""

    retry: RetryPolicy | None = None
    soft_time_limit: float | None = Field(default=None, gt=0)
    time_limit: float | None = Field(default=None, gt=0)
    expires: float | None = Field(default=None, gt=0, description="seconds after the due time")
    priority: int | None = Field(default=None, ge=0, le=9, description="0 lowest … 9 highest")


class JobEntry(_Strict):
    """One job. Left out: ``timezone`` and ``queue`` take the server's defaults, the rest the
    defaults of a new job. A job runs ``task`` or, instead, a ``workflow``."""

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    workflow: Annotated[dict[str, Any], AfterValidator(_finite)] | None = Field(
        default=None,
        description="a workflow definition (docs/workflows.md); leave task, args, kwargs out",
    )
    # Checked even when left out, after ``workflow`` (declared before it): one of the two.
    task: str | None = Field(default=None, min_length=1, max_length=255, validate_default=True)
    trigger: Annotated[
        CronTrigger | IntervalTrigger | OnceTrigger | ManualTrigger, Field(discriminator="kind")
    ]
    timezone: str | None = None
    queue: str | None = None
    target_worker: str | None = None
    broadcast: bool = False
    args: Annotated[list[Any], AfterValidator(_finite)] = Field(default_factory=list)
    kwargs: Annotated[dict[str, Any], AfterValidator(_finite)] = Field(default_factory=dict)
    options: JobOptions = Field(default_factory=JobOptions)
    enabled: bool = True
    tags: list[str] = Field(default_factory=list)
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None
    max_runs: int | None = Field(default=None, ge=1)
    jitter_ms: int = Field(default=0, ge=0)
    misfire_policy: MisfirePolicy = MisfirePolicy.RUN_ONCE
    misfire_grace_s: int = Field(default=60, ge=0)
    overlap_policy: OverlapPolicy = OverlapPolicy.ALLOW
    data_window: DataWindow | None = None

    @field_validator("task", mode="after")
    @classmethod
    def _task_or_workflow(cls, task: str | None, info: ValidationInfo) -> str:
        if task is not None:
            return task
        if info.data.get("workflow") is None:
            raise ValueError("give the task to run, or a workflow")
        return "mainspring.workflow"


class Selector(_Strict):
    """The filter a document was exported with: ``--prune`` only deletes managed jobs that
    match it, so a partial export never prunes the jobs it left out."""

    tag: str | None = None
    queue: str | None = None
    task: str | None = None
    text: str | None = None
    enabled: bool | None = None

    def to_filter(self) -> JobFilter:
        return JobFilter(self.tag, self.enabled, None, self.queue, self.task, self.text)


class JobDocument(_Strict):
    """A set of Mainspring jobs (``mainspring export`` / ``mainspring apply``)."""

    version: Literal[1] = 1
    selector: Selector | None = None
    jobs: list[JobEntry] = Field(default_factory=list)


def document_schema() -> dict[str, Any]:
    """The JSON Schema of the document (draft 2020-12), for editors and CI checks."""
    schema = JobDocument.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


# --- YAML -------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML's safe subset, refusing a key given twice (YAML would keep the last silently) and
    aliases (``*name``), which no document needs and which can multiply a small text into a
    huge structure."""

    def _not_json(self, node: yaml.Node) -> Any:
        line = node.start_mark.line + 1
        raise ValidationError("document", f"line {line}: {node.tag} values are not allowed")

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
            raise ValidationError("document", f"line {line}: aliases (*name) are not allowed")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        assert isinstance(node, yaml.MappingNode)
        seen: list[Any] = []
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise ValidationError("document", f"line {line}: key {key!r} is given twice")
            seen.append(key)
        return super().construct_mapping(node, deep=deep)


for _tag in ("binary", "set", "omap", "pairs"):  # no JSON equivalent
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _Loader._not_json)


class _Dumper(yaml.SafeDumper):
    """Lists indented under their key; text with line breaks as ``|`` blocks; no aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100, indent=2)


def load_yaml(text: str) -> Any:
    """Parse YAML (JSON is YAML too); a syntax error names its line."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ValidationError("document", f"{where}not valid YAML ({exc.problem})") from None
    except yaml.YAMLError as exc:
        raise ValidationError("document", f"not valid YAML ({exc})") from None
    except RecursionError:
        raise ValidationError("document", "nested too deeply") from None


# --- reading ----------------------------------------------------------------------------


@dataclass
class Document:
    specs: list[job_service.JobSpec]
    selector: Selector | None = None


def load_document(source: str | dict[str, Any], timezone: str, queue: str) -> Document:
    """Parse and check a document (YAML/JSON text or parsed), with every problem named by
    its place (``jobs[2].trigger.expr``); ``timezone``/``queue`` fill the ones left out."""
    data = load_yaml(source) if isinstance(source, str) else source
    try:
        doc = JobDocument.model_validate(data)
    except PydanticValidationError as exc:
        err = exc.errors()[0]
        message = f"{err['msg']}{_whose(err['loc'], data)}"
        raise ValidationError(_place(err["loc"]), message) from None
    seen: dict[str, int] = {}
    specs = []
    for i, entry in enumerate(doc.jobs):
        if entry.name in seen:
            raise ValidationError(
                f"jobs[{i}].name", f"{entry.name!r} is also jobs[{seen[entry.name]}]"
            )
        seen[entry.name] = i
        values = entry.model_dump(mode="json", exclude_none=True)
        values["options"] = entry.options.model_dump(mode="json", exclude_none=True)
        values.setdefault("timezone", timezone)
        values.setdefault("queue", queue)
        specs.append(job_service.JobSpec(**values))
    return Document(specs, doc.selector)


def _place(loc: Iterable[int | str]) -> str:
    """``('jobs', 2, 'trigger', 'cron', 'expr')`` → ``jobs[2].trigger.expr`` (the union's
    branch name dropped)."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{item}]"]
        elif not (parts and parts[-1] == "trigger" and item in TRIGGER_KINDS):
            parts.append(str(item))
    return ".".join(parts) or "document"


def _whose(loc: tuple[int | str, ...], data: Any) -> str:
    """`` (job 'name')`` for an error inside a job that has a name, else nothing."""
    if len(loc) < 2 or loc[0] != "jobs" or not isinstance(loc[1], int):
        return ""
    jobs = data.get("jobs") if isinstance(data, dict) else None
    if isinstance(jobs, list) and loc[1] < len(jobs) and isinstance(jobs[loc[1]], dict):
        name = jobs[loc[1]].get("name")
        if isinstance(name, str):
            return f" (job {name!r})"
    return ""


# --- writing ----------------------------------------------------------------------------


def entry(definition: dict[str, Any]) -> dict[str, Any]:
    """A stored definition in document form: fixed key order, defaults and ``v`` left out,
    the managed tag hidden."""
    values = {k: v for k, v in definition.items() if k not in ("v", "version")}
    values["trigger"] = {k: v for k, v in values["trigger"].items() if k != "v"}
    if values.get("data_window"):
        values["data_window"] = {
            k: v for k, v in values["data_window"].items() if k != "v" and v not in (None, False)
        }
    values["tags"] = [t for t in values.get("tags", []) if t != MANAGED_TAG]
    _local_instants(values)
    return {
        key: values[key]
        for key in ORDER
        if key in values and (key in ALWAYS or values[key] != DEFAULTS.get(key))
    }


def _local_instants(values: dict[str, Any]) -> None:
    """Instants in the job's own zone (``+08:00``), easier to read than UTC; same instant."""
    try:
        tz = ZoneInfo(values["timezone"])
    except (KeyError, ValueError, ZoneInfoNotFoundError):
        return
    for holder, key in ((values, "start_at"), (values, "end_at"), (values["trigger"], "at"),
                        (values["trigger"], "anchor")):  # fmt: skip
        if isinstance(holder.get(key), str):
            holder[key] = datetime.fromisoformat(holder[key]).astimezone(tz).isoformat()
