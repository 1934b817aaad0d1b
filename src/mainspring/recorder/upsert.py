"""Bulk row writes in one statement per chunk, in each database's own dialect.

Why not ORM merges: loading, diffing and flushing one object per run cost more than the
recorder's whole budget per event. These statements send a chunk of rows in one round trip:
``INSERT … ON CONFLICT DO UPDATE`` on PostgreSQL and SQLite, ``INSERT … ON DUPLICATE KEY
UPDATE`` on MySQL and MariaDB.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, Column, MetaData, String, Table
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session


@functools.cache
def _nulls_as_sql(table: Table) -> Table:
    """``table`` as seen by these writes: JSON ``None`` binds as SQL NULL (a JSON ``null``
    would count as a value, which a first-value-wins merge would then keep for ever)."""
    columns = [
        Column(
            c.name,
            JSON(none_as_null=True) if isinstance(c.type, JSON) else c.type,
            primary_key=c.primary_key,
        )
        for c in table.columns
    ]
    return Table(table.name, MetaData(), *columns)


def _statement(session: Session, table: Table) -> Any:
    """An INSERT run once with many rows: SQLAlchemy packs them into multi-row VALUES itself,
    with one compiled (and cached) form for every batch."""
    name = session.get_bind().dialect.name
    module = {"postgresql": postgresql, "sqlite": sqlite, "mysql": mysql}.get(name)
    if module is None:
        raise NotImplementedError(f"no bulk upsert for the {name} dialect")
    return module.insert(_nulls_as_sql(table))


def prepared(table: Table, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with strings cut to their column's length (a too-long task name must not make a
    batch fail for ever)."""
    sized = [
        (c.name, c.type.length)
        for c in table.columns
        if isinstance(c.type, String) and c.type.length
    ]
    out = []
    for row in rows:
        for name, length in sized:
            value = row.get(name)
            if isinstance(value, str) and len(value) > length:
                row = {**row, name: value[:length]}
        out.append(row)
    return out


def upsert(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], columns: Sequence[str]
) -> None:
    """Insert rows, or set ``columns`` of those that exist to the given values."""
    key = [c.name for c in table.primary_key.columns]
    stmt = _statement(session, table)
    if session.get_bind().dialect.name == "mysql":
        stmt = stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in columns})
    else:
        stmt = stmt.on_conflict_do_update(
            index_elements=key, set_={c: stmt.excluded[c] for c in columns}
        )
    session.execute(stmt, prepared(table, rows))
