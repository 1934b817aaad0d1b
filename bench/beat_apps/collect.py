"""Timestamp task messages as they land in Redis, for every compared scheduler.

Mainspring's messages carry their due instant (``mainspring_scheduled_for``) and are read with
``consume()`` from ``scheduler_precision.py``, one thread per queue. celery beat, django-celery-beat
and RedBeat send plain Celery messages: ``RawCollector`` pops them the same way (``BRPOP``, then
the rest of the burst with one ``RPOP key count``), keeps the payload and decodes it afterwards,
so that decoding never delays the next pop. The job's name is the task's only argument.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import redis
from scheduler_precision import consume


@dataclass(frozen=True)
class Arrival:
    queue: str
    key: str  # the job's name (celery-based systems) or the run id (Mainspring)
    due: float | None  # the due instant when the message says it (Mainspring only)
    at: float  # when the message was popped from Redis (epoch seconds)


class RawCollector:
    def __init__(self, broker: str, queues: list[str]) -> None:
        self._broker = broker
        self._queues = queues
        self._raw: dict[str, list[tuple[bytes, float]]] = {q: [] for q in queues}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        client = redis.Redis.from_url(self._broker)
        while not self._stop.is_set():
            first = client.brpop(self._queues, timeout=0.2)
            at = time.time()
            if first is None:
                continue
            key, payload = first
            rest = client.rpop(key, 10_000) or []
            queue = key.decode() if isinstance(key, bytes) else key
            self._raw[queue] += [(p, at) for p in (payload, *rest)]

    def arrivals(self) -> list[Arrival]:
        return [
            Arrival(q, _job_name(p), None, at)
            for q, got in self._raw.items()
            for p, at in list(got)
        ]

    def times(self, queue: str) -> list[tuple[float | None, float]]:
        """(due, arrival) of the messages on ``queue`` so far, without decoding them."""
        return [(None, at) for _, at in list(self._raw[queue])]

    def count(self) -> int:
        return sum(len(got) for got in self._raw.values())

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _job_name(payload: bytes) -> str:
    message = json.loads(payload)
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    return str(args[0])


class MainspringCollector:
    def __init__(self, broker: str, queues: list[str]) -> None:
        self._stop = threading.Event()
        self._lists: dict[str, list[tuple[str, str, float]]] = {q: [] for q in queues}
        self._threads = [
            threading.Thread(target=consume, args=(broker, q, got, self._stop), daemon=True)
            for q, got in self._lists.items()
        ]
        for thread in self._threads:
            thread.start()

    def arrivals(self) -> list[Arrival]:
        return [
            Arrival(q, rid, datetime.fromisoformat(due).timestamp(), at)
            for q, got in self._lists.items()
            for rid, due, at in list(got)
        ]

    def times(self, queue: str) -> list[tuple[float | None, float]]:
        return [
            (datetime.fromisoformat(due).timestamp(), at) for _, due, at in list(self._lists[queue])
        ]

    def count(self) -> int:
        return sum(len(got) for got in self._lists.values())

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


Collector = RawCollector | MainspringCollector


def first_after(
    collector: Collector, queue: str, since: float, timeout: float
) -> tuple[float | None, float] | None:
    """(due, arrival) of the first message on ``queue`` popped after ``since``, polling every
    10 ms until ``timeout``; None if none came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hits = [hit for hit in collector.times(queue) if hit[1] > since]
        if hits:
            return min(hits, key=lambda hit: hit[1])
        time.sleep(0.01)
    return None
