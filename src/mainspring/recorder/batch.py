"""A batch of events on its way to the database: folded run patches and worker events.

Batches merge (a later one into an earlier one, in any order of events inside them), so a
batch that could not be written, or one that waits while the writer is busy, simply takes in
what arrives next: under load batches grow, and each statement carries more rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mainspring.recorder.fold import RunPatch, fold


@dataclass
class Batch:
    patches: dict[str, RunPatch] = field(default_factory=dict)
    workers: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0
    # The newest broker message folded in; acknowledged (with all before it) once written.
    ack: Any = None

    def __bool__(self) -> bool:
        return bool(self.patches or self.workers or self.ack is not None)

    def add(self, event: dict[str, Any]) -> None:
        if str(event.get("type", "")).startswith("worker-"):
            self.workers.append(event)
        else:
            fold(self.patches, event)
        self.events += 1

    def add_patch(self, patch: RunPatch) -> None:
        current = self.patches.get(patch.run_id)
        if current is None:
            self.patches[patch.run_id] = patch
        else:
            current.merge(patch)

    def merge_later(self, later: Batch) -> None:
        """Take in ``later`` (events that arrived after this batch's)."""
        for patch in later.patches.values():
            self.add_patch(patch)
        self.workers.extend(later.workers)
        self.events += later.events
        if later.ack is not None:
            self.ack = later.ack
