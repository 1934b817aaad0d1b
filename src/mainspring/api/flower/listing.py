"""Flower's task history endpoints, answered from the runs table: ``/api/tasks`` (filters,
sort, offset, search), ``/api/task/types`` and ``/api/task/info/{id}``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query

from mainspring.api.deps import Db
from mainspring.api.flower.deps import (
    ERRORS,
    Viewer,
    Zone,
    bad_request,
    local_instant,
    parse_int,
)
from mainspring.api.flower.history import (
    SORT_COLUMNS,
    TaskQuery,
    children_of,
    get_run,
    list_runs,
    parse_search,
    task_types,
)
from mainspring.api.flower.shapes import CELERY_STATE, run_states_for, task_dict

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10000

router = APIRouter(responses=ERRORS)


def _all(value: str | None) -> str | None:
    """Flower's filters take ``All`` (or nothing) for no filter."""
    return None if value in (None, "", "All") else value


def _states(raw: str | None) -> frozenset[str] | None:
    name = _all(raw)
    if name is None:
        return None
    states = run_states_for(name)
    if states is None:
        known = sorted({*CELERY_STATE.values(), *(s.value for s in CELERY_STATE)})
        raise bad_request("state", f"unknown state; use one of {', '.join(known)}")
    return states


def _received(field: str, raw: str | None, tz: ZoneInfo) -> datetime | None:
    """Flower's ``%Y-%m-%d %H:%M`` (any ISO 8601 works), in the configured time zone."""
    if raw is None or raw.strip() == "":
        return None
    return local_instant(field, raw, tz, "2026-01-01 02:00")


def _sort(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    if raw.lstrip("-") not in SORT_COLUMNS:
        keys = ", ".join(SORT_COLUMNS)
        raise bad_request("sort_by", f"must be one of {keys}, optionally with a leading '-'")
    return raw


def _limit(raw: str | None) -> int:
    limit = parse_int("limit", raw, minimum=0) or DEFAULT_LIMIT
    if limit > MAX_LIMIT:
        raise bad_request("limit", f"must be at most {MAX_LIMIT}")
    return limit


@router.get("/tasks")
def tasks_list(
    db: Db,
    tz: Zone,
    _user: Viewer,
    limit: Annotated[str | None, Query(description=f"default {DEFAULT_LIMIT}")] = None,
    offset: str | None = None,
    sort_by: Annotated[str | None, Query(description="name, state, received, started")] = None,
    workername: str | None = None,
    taskname: str | None = None,
    state: str | None = None,
    received_start: Annotated[str | None, Query(description="YYYY-MM-DD HH:MM")] = None,
    received_end: Annotated[str | None, Query(description="YYYY-MM-DD HH:MM")] = None,
    search: Annotated[str | None, Query(description="words, args:x, kwargs:k=v …")] = None,
) -> dict[str, Any]:
    """Runs as Flower's ``{task id: task}``, newest first unless ``sort_by`` says otherwise."""
    query = TaskQuery(
        limit=_limit(limit),
        offset=max(parse_int("offset", offset) or 0, 0),
        sort_by=_sort(sort_by),
        worker=_all(workername),
        task=_all(taskname),
        states=_states(state),
        received_start=_received("received_start", received_start, tz),
        received_end=_received("received_end", received_end, tz),
        search=parse_search(search or "", run_states_for),
    )
    rows = list_runs(db, query)
    children = children_of(db, [run.id for run in rows])
    return {run.id: task_dict(run, children[run.id]) for run in rows}


@router.get("/task/types")
def task_types_list(db: Db, _user: Viewer) -> dict[str, list[str]]:
    """Task names seen in runs or registered by workers."""
    return {"task-types": task_types(db)}


@router.get("/task/info/{task_id}")
def task_info(task_id: str, db: Db, _user: Viewer) -> dict[str, Any]:
    """One run as Flower's task dict (with ``task-id`` too, as Flower's docs show); 404 for
    an id that is not a run."""
    run = get_run(db, task_id)
    if run is None:
        raise HTTPException(status_code=404, detail=f"Unknown task '{task_id}'")
    return {**task_dict(run, children_of(db, [run.id])[run.id]), "task-id": run.id}
