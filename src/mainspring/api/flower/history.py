"""Task history for the Flower API, read from the runs table (not from memory, as Flower
does): it survives restarts and is the same whichever web process answers.

``TaskQuery`` carries Flower's ``/api/tasks`` parameters once validated; the queries here
are the only SQL of the Flower package, kept out of the routes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, Text, and_, case, cast, false, or_, select
from sqlalchemy.orm import Session

from mainspring.db.models import Run, Worker

SORT_COLUMNS = {
    "name": Run.task,
    "state": Run.state,
    "received": Run.received_at,
    "started": Run.started_at,
}

# Flower's search syntax: words split on spaces and commas, double quotes keep spaces.
_SEARCH_WORD = re.compile(r'(?:[^\s,"]|"(?:\\.|[^"])*")+')


@dataclass(frozen=True)
class SearchTerms:
    """``result:x``, ``args:x`` (all must match), ``kwargs:k=v`` (all), ``state:S`` (any),
    and a free word matched anywhere (the exception too, which Flower does not search). As
    in Flower, a run matches if any kind matches."""

    any: str | None = None
    result: str | None = None
    args: tuple[str, ...] = ()
    kwargs: tuple[tuple[str, str], ...] = ()
    states: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.any or self.result or self.args or self.kwargs or self.states)


@dataclass(frozen=True)
class TaskQuery:
    limit: int
    offset: int = 0
    sort_by: str | None = None  # a key of SORT_COLUMNS, "-" first for descending
    worker: str | None = None
    task: str | None = None
    states: frozenset[str] | None = None
    received_start: datetime | None = None
    received_end: datetime | None = None
    search: SearchTerms = field(default_factory=SearchTerms)


def _strip(value: str) -> str:
    return value.strip('" ')


def parse_search(raw: str, state_names: Any) -> SearchTerms:
    """Flower's ``search`` value; ``state_names`` maps a state word to run states."""
    found: dict[str, Any] = {"args": [], "kwargs": [], "states": set()}
    for word in _SEARCH_WORD.findall(raw or ""):
        if word.startswith("result:"):
            found["result"] = _strip(word[len("result:") :])
        elif word.startswith("args:"):
            found["args"].append(_strip(word[len("args:") :]))
        elif word.startswith("kwargs:"):
            key, _, value = word[len("kwargs:") :].partition("=")
            found["kwargs"].append((key.strip(), _strip(value)))
        elif word.startswith("state:"):
            found["states"] |= state_names(_strip(word[len("state:") :])) or set()
        else:
            found["any"] = _strip(word)
    return SearchTerms(
        any=found.get("any") or None,
        result=found.get("result") or None,
        args=tuple(a for a in found["args"] if a),
        kwargs=tuple(found["kwargs"]),
        states=frozenset(found["states"]),
    )


def _text(column: Any) -> ColumnElement[str]:
    return cast(column, Text)


def _search_clause(terms: SearchTerms) -> ColumnElement[bool]:
    """Substring matches on the stored JSON text of arguments and result."""
    clauses: list[ColumnElement[bool]] = []
    if terms.states:
        clauses.append(Run.state.in_(terms.states))
    if terms.any:
        columns = [Run.task, Run.id, Run.state, Run.worker, Run.exception_message]
        texts = [_text(Run.args), _text(Run.kwargs), _text(Run.result)]
        clauses.append(or_(*(c.contains(terms.any, autoescape=True) for c in columns + texts)))
    if terms.result:
        clauses.append(_text(Run.result).contains(terms.result, autoescape=True))
    if terms.args:
        clauses.append(and_(*(_text(Run.args).contains(a, autoescape=True) for a in terms.args)))
    for key, value in terms.kwargs:
        text = _text(Run.kwargs)
        clauses.append(
            or_(
                text.contains(f'"{key}": "{value}"', autoescape=True),
                text.contains(f'"{key}": {value}', autoescape=True),
            )
        )
    return or_(*clauses) if clauses else false()


def _filtered(query: TaskQuery) -> Select[Run]:
    stmt = select(Run)
    if query.worker:
        stmt = stmt.where(Run.worker == query.worker)
    if query.task:
        stmt = stmt.where(Run.task == query.task)
    if query.states is not None:
        stmt = stmt.where(Run.state.in_(query.states))
    if query.received_start is not None:
        stmt = stmt.where(Run.received_at > query.received_start)
    if query.received_end is not None:
        stmt = stmt.where(Run.received_at < query.received_end)
    if not query.search.empty:
        stmt = stmt.where(_search_clause(query.search))
    return stmt


def _ordered(stmt: Select[Run], sort_by: str | None) -> Select[Run]:
    """Newest first; ``sort_by`` sorts as Flower does (missing values first, ``-`` reverses
    the whole order), newest first among equals."""
    newest = (Run.created_at.desc(), Run.id.desc())
    if not sort_by:
        return stmt.order_by(*newest)
    descending = sort_by.startswith("-")
    column = SORT_COLUMNS[sort_by.lstrip("-")]
    missing_first = case((column.is_(None), 1 if descending else 0), else_=0 if descending else 1)
    direction = column.desc() if descending else column.asc()
    return stmt.order_by(missing_first, direction, *newest)


def list_runs(session: Session, query: TaskQuery) -> Sequence[Run]:
    stmt = _ordered(_filtered(query), query.sort_by).offset(query.offset).limit(query.limit)
    return session.scalars(stmt).all()


def children_of(session: Session, run_ids: Iterable[str]) -> dict[str, list[str]]:
    """The ids of runs whose parent is each of ``run_ids`` (broadcast copies, workflow steps)."""
    ids = list(run_ids)
    found: dict[str, list[str]] = {run_id: [] for run_id in ids}
    for start in range(0, len(ids), 500):
        rows = session.execute(
            select(Run.parent_id, Run.id)
            .where(Run.parent_id.in_(ids[start : start + 500]))
            .order_by(Run.created_at, Run.id)
        )
        for parent_id, child_id in rows:
            found[str(parent_id)].append(child_id)
    return found


def get_run(session: Session, run_id: str) -> Run | None:
    return session.get(Run, run_id)


def task_types(session: Session) -> list[str]:
    """Task names seen in runs or registered by a worker, sorted."""
    names = set(session.scalars(select(Run.task).distinct()))
    for registered in session.scalars(select(Worker.registered_tasks)):
        names.update(registered or [])
    return sorted(names)


def workers(session: Session, hostname: str | None = None) -> Sequence[Worker]:
    stmt = select(Worker).order_by(Worker.hostname)
    if hostname is not None:
        stmt = stmt.where(Worker.hostname == hostname)
    return session.scalars(stmt).all()
