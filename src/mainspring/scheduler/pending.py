"""Claimed runs waiting for their instant, shared by the claiming and the publishing thread."""

from __future__ import annotations

import heapq
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mainspring.scheduler.firing import DueRun


@dataclass(order=True)
class Pending:
    """A claimed run and its message, built ahead (``None``: build it when sending)."""

    at: datetime
    run_id: str
    run: DueRun = field(compare=False)
    message: Any = field(compare=False, default=None)


class PendingRuns:
    """A heap ordered by publish instant. ``push`` wakes a publisher waiting in ``wait`` so
    that a run due earlier than the current head is not published late."""

    def __init__(self) -> None:
        self._heap: list[Pending] = []
        self._changed = threading.Condition()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, items: list[Pending]) -> None:
        if not items:
            return
        with self._changed:
            for item in items:
                heapq.heappush(self._heap, item)
            self._changed.notify_all()

    def head(self) -> datetime | None:
        with self._changed:
            return self._heap[0].at if self._heap else None

    def wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, or until something is pushed."""
        with self._changed:
            self._changed.wait(timeout)

    def pop_due(self, now: datetime) -> list[Pending]:
        """Every run due at or before ``now``, in order."""
        due: list[Pending] = []
        with self._changed:
            while self._heap and self._heap[0].at <= now:
                due.append(heapq.heappop(self._heap))
        return due

    def run_ids(self) -> list[str]:
        with self._changed:
            return [p.run_id for p in self._heap]

    def drop(self, run_ids: set[str]) -> int:
        """Forget these runs (cancelled before their instant); return how many were held."""
        with self._changed:
            kept = [p for p in self._heap if p.run_id not in run_ids]
            dropped = len(self._heap) - len(kept)
            if dropped:
                heapq.heapify(kept)
                self._heap = kept
            return dropped

    def drain(self) -> list[Pending]:
        with self._changed:
            items, self._heap = self._heap, []
            return items
