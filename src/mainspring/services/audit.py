"""The audit log: who changed what, when and from where.

Services write an entry in the same transaction as the change they make, so a change and its
record commit or roll back together. The caller passes an ``Actor`` (a name and the client's
address); the web layer builds one per request with ``mainspring.api.audit.AuditActor``, the
CLI with ``Actor.cli()``.

``changes`` holds the before and after values of the fields that changed, as
``{"v": 1, "before": {...}, "after": {...}}`` (see ``diff``). Secrets never reach the table:
``record`` replaces the value of every key that names a secret with ``"***"``, at any depth,
by the same rule the recorder applies to task arguments (``recorder.masking``: keys containing
``password``, ``token``, ``secret``, ``api_key``, ``credential``, ``authorization``…) plus
``*hash``. So context keys must avoid those words (``owner``, not ``token_owner``).
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mainspring.db.models import AuditEntry
from mainspring.errors import ValidationError
from mainspring.recorder import masking as recorder_masking
from mainspring.services.clock import utcnow

CHANGES_VERSION = 1
MASK = recorder_masking.MASK
_MAX_ID = 2**63 - 1


@dataclass(frozen=True)
class Actor:
    """Who makes a change (a user name, or ``cli:<os user>``) and from which address."""

    name: str
    source_ip: str | None = None

    @classmethod
    def cli(cls) -> Actor:
        """The person at this terminal; the CLI talks to the database directly."""
        try:
            who = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry, as in some containers
            who = "unknown"
        return cls(f"cli:{who}"[:150])


@dataclass(frozen=True)
class AuditFilter:
    object_type: str | None = None
    object_id: str | None = None
    actor: str | None = None
    action: str | None = None


def is_secret_key(key: str) -> bool:
    """The recorder's rule for task arguments (one rule for the whole product), plus hashes."""
    return recorder_masking.is_secret_key(key) or key.lower().endswith("hash")


def mask_secrets(value: Any) -> Any:
    """A copy of ``value`` with the values of secret-looking keys replaced by ``MASK``."""
    if isinstance(value, Mapping):
        return {
            str(k): MASK if is_secret_key(str(k)) else mask_secrets(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_secrets(item) for item in value]
    return value


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The fields whose values differ, as ``{"before": {...}, "after": {...}}``.

    A key missing on one side is left out of that side, so a creation is ``diff({}, new)``
    and a deletion ``diff(old, {})``.
    """
    keys = [k for k in {**before, **after} if before.get(k, ...) != after.get(k, ...)]
    return {
        "before": {k: before[k] for k in keys if k in before},
        "after": {k: after[k] for k in keys if k in after},
    }


def record(
    session: Session,
    actor: str,
    action: str,
    object_type: str,
    object_id: str | int | None,
    changes: Mapping[str, Any] | None,
    source_ip: str | None = None,
) -> AuditEntry:
    """Add one entry to the current transaction, with secrets masked."""
    stored = None
    if changes is not None:
        stored = {"v": CHANGES_VERSION, **mask_secrets(changes)}
    entry = AuditEntry(
        at=utcnow(),
        actor=actor[:150],
        source_ip=source_ip[:64] if source_ip else None,
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        changes=stored,
    )
    session.add(entry)
    session.flush()
    return entry


def record_as(
    session: Session,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: str | int | None,
    changes: Mapping[str, Any] | None,
) -> AuditEntry:
    """``record`` with the name and address taken from ``actor``."""
    return record(session, actor.name, action, object_type, object_id, changes, actor.source_ip)


def encode_cursor(entry_id: int) -> str:
    return str(entry_id)


def decode_cursor(cursor: str) -> int:
    """The id a page ended at; anything else is a ValidationError on ``cursor``."""
    if not cursor.isascii() or not cursor.isdigit() or not 0 < int(cursor) <= _MAX_ID:
        raise ValidationError("cursor", "is not a next_cursor from a previous page")
    return int(cursor)


def list_entries(
    session: Session, flt: AuditFilter, limit: int = 50, before_id: int | None = None
) -> tuple[Sequence[AuditEntry], int | None]:
    """Entries newest first (by id, which only grows) and the id to continue before."""
    query = select(AuditEntry)
    for column, value in (
        (AuditEntry.object_type, flt.object_type),
        (AuditEntry.object_id, flt.object_id),
        (AuditEntry.actor, flt.actor),
        (AuditEntry.action, flt.action),
    ):
        if value is not None:
            query = query.where(column == value)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    rows = session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit + 1)).all()
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None
