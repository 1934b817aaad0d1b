"""Moving in: turning crontabs, Celery ``beat_schedule`` dicts and django-celery-beat tables
into Mainspring jobs.

Each reader returns an ``Imported``: the job specs it could build, the entries it could not
(``skipped``, each with where it was and why), and what it imported only in part (``notes``:
an option Mainspring does not carry over). Nothing is stored here; ``services.jobs_code``
plans and applies the specs, so a second import of the same source updates, never duplicates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mainspring.services.jobs import JobSpec

_NOT_SLUG = re.compile(r"[^a-z0-9.]+")


@dataclass(frozen=True)
class Problem:
    """Something in the source: ``where`` it is (``line 12``, ``entry 'x'``) and ``reason``."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class Imported:
    specs: list[JobSpec] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)


def slug(text: str, limit: int = 40) -> str:
    """Lower-case letters, digits and dots joined by ``-``, at most ``limit`` characters,
    cut at a word boundary; ``"job"`` when nothing is left."""
    words = [w.strip(".") for w in _NOT_SLUG.split(text.lower())]
    out = ""
    for word in filter(None, words):
        candidate = f"{out}-{word}" if out else word
        if len(candidate) > limit:
            break
        out = candidate
    if not out:  # a first word longer than the limit
        out = next(filter(None, words), "")[:limit].strip(".")
    return out or "job"
