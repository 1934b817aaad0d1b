"""Per-run log capture on the worker: output travels to the recorder as ``task-log`` events.

Workers need no database: lines are buffered and sent as Celery events every ~200 ms (or
when 32 KiB are waiting), numbered so the recorder can store them in order and drop
duplicates. Past the per-run cap one truncation marker is sent and the rest is dropped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

LOG_EVENT = "task-log"
FLUSH_SECONDS = 0.2
FLUSH_BYTES = 32 * 1024
DEFAULT_CAP_BYTES = 1024 * 1024
SEQ_PER_ATTEMPT = 1_000_000
TRUNCATION_MARKER = "\n[mainspring: log truncated at {cap} bytes]\n"

Sender = Callable[..., Any]


class RunLogEmitter:
    """Buffers a run's output and sends it in numbered chunks; safe to call from threads.

    ``first_seq`` lets each attempt of a retried run number its chunks apart from the others.
    """

    def __init__(
        self, send: Sender, cap_bytes: int = DEFAULT_CAP_BYTES, first_seq: int = 0
    ) -> None:
        self._send = send
        self._cap = cap_bytes
        self._lock = threading.Lock()
        self._chunks: list[str] = []
        self._pending = 0
        self._total = 0
        self._seq = first_seq
        self._truncated = False
        self._last_flush = time.monotonic()
        self._stream = "stdout"
        self._first_at: datetime | None = None

    @property
    def total_bytes(self) -> int:
        return self._total

    def write(self, text: str, stream: str = "stdout") -> None:
        """Append output; flushes when enough time or bytes have gathered."""
        with self._lock:
            if self._truncated or not text:
                return
            if stream != self._stream and self._chunks:
                self._flush_locked()
            self._stream = stream
            size = len(text.encode("utf-8", "replace"))
            if self._total + size > self._cap:
                self._chunks.append(TRUNCATION_MARKER.format(cap=self._cap))
                self._truncated = True
                self._flush_locked()
                return
            if self._first_at is None:
                self._first_at = datetime.now(UTC)
            self._chunks.append(text)
            self._total += size
            self._pending += size
            if self._pending >= FLUSH_BYTES or time.monotonic() - self._last_flush >= FLUSH_SECONDS:
                self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def flush_if_stale(self, max_age: float = FLUSH_SECONDS) -> None:
        """Send what has waited longer than ``max_age`` seconds (called by a timer thread, so
        a task that prints once and then sleeps is still followed live)."""
        with self._lock:
            if self._chunks and time.monotonic() - self._last_flush >= max_age:
                self._flush_locked()

    def _flush_locked(self) -> None:
        self._last_flush = time.monotonic()
        if not self._chunks:
            return
        text = "".join(self._chunks)
        at = self._first_at or datetime.now(UTC)
        self._chunks.clear()
        self._pending = 0
        self._first_at = None
        self._send(
            LOG_EVENT,
            seq=self._seq,
            stream=self._stream,
            text=text,
            at=at.isoformat(),
            truncated=self._truncated,
        )
        self._seq += 1
