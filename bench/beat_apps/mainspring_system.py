"""Mainspring driven like the other systems in ``beat_compare.py``: jobs through the job
service (``scheduler_precision.py`` / ``scheduler_burst.py`` helpers), a real
``mainspring scheduler`` process, edits through the Python client.

Each phase gets a fresh PostgreSQL database (``fresh_database``), dropped by ``reset``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from scheduler_burst import create_jobs
from scheduler_precision import fresh_database

from beat_apps.apps import TASK
from beat_apps.collect import MainspringCollector
from beat_apps.procs import Procs
from mainspring.client import Mainspring
from mainspring.context import AppContext
from mainspring.services import jobs as job_service
from mainspring.settings import Settings


class MainspringSystem:
    name = "Mainspring"
    key = "mainspring"
    method = "header"
    can_edit = True
    store_rate = 2000

    def __init__(self, broker: str, tmp: Path, procs: Procs) -> None:
        self.broker, self.tmp, self.procs = broker, tmp, procs
        self.phase = 0
        self._open: tuple[AppContext, Mainspring, Callable[[], None], str] | None = None
        self.edit_queues: list[str] = []

    def collector(self, queues: list[str]) -> MainspringCollector:
        return MainspringCollector(self.broker, queues)

    def _ctx(self) -> AppContext:
        if self._open is None:
            self.phase += 1
            data_dir = self.tmp / f"{self.key}-{self.phase}"
            data_dir.mkdir()
            url, drop = fresh_database("postgres", data_dir)
            settings = Settings(data_dir=data_dir, database_url=url, broker_url=self.broker,
                                secret_key="bench")  # noqa: S106  # fmt: skip
            ctx = AppContext.open(settings)
            self._open = (ctx, Mainspring(ctx), drop, url)
        return self._open[0]

    def _create(self, name: str, queue: str, trigger: dict[str, Any]) -> None:
        spec = job_service.JobSpec(name=name, task=TASK, queue=queue, timezone="UTC",
                                   trigger=trigger, args=[name])  # fmt: skip
        with self._ctx().session() as session:
            job_service.create_job(session, spec)

    @staticmethod
    def _dormant() -> dict[str, Any]:
        anchor = datetime.now().astimezone() + timedelta(minutes=30)
        return {"kind": "interval", "every_ms": 3_600_000, "anchor": anchor.isoformat()}

    def setup_precision(
        self, queue: str, jobs: int, anchor: datetime, edit_queues: list[str]
    ) -> None:
        trigger = {"kind": "interval", "every_ms": 1000, "anchor": anchor.isoformat()}
        for i in range(jobs):
            self._create(f"job-{i}", queue, trigger)
        self._dormant_edits(edit_queues)

    def setup_burst(self, queue: str, jobs: int, due: datetime) -> None:
        create_jobs(self._ctx(), jobs, due, queue)

    def setup_idle(self, edit_queues: list[str], probe_queue: str) -> None:
        self._ctx()  # the database first: a one-off already past when stored never fires
        at = datetime.now().astimezone() + timedelta(seconds=2)
        self._create("probe", probe_queue, {"kind": "once", "at": at.isoformat()})
        self._dormant_edits(edit_queues)

    def _dormant_edits(self, edit_queues: list[str]) -> None:
        self.edit_queues = edit_queues
        for k, queue in enumerate(edit_queues):
            self._create(f"edit-{k}", queue, self._dormant())

    def edit(self, k: int, fast: bool) -> None:
        """The Python client's create-or-update by name (commits, then wakes the scheduler).
        Like the others' edited jobs, the new schedule is due at once: anchored 10 ms ahead."""
        assert self._open is not None
        soon = (datetime.now().astimezone() + timedelta(milliseconds=10)).isoformat()
        trigger = (
            {"kind": "interval", "every_ms": 1000, "anchor": soon} if fast else self._dormant()
        )
        self._open[1].upsert_job(f"edit-{k}", TASK, trigger=trigger, queue=self.edit_queues[k],
                                 args=[f"edit-{k}"], timezone="UTC")  # fmt: skip

    def start(self) -> subprocess.Popen[bytes]:
        self._ctx()
        assert self._open is not None
        data_dir = self.tmp / f"{self.key}-{self.phase}"
        env = {
            **os.environ,
            "MAINSPRING_DATABASE_URL": self._open[3],
            "MAINSPRING_BROKER_URL": self.broker,
            "MAINSPRING_DATA_DIR": str(data_dir),
        }
        cmd = [sys.executable, "-m", "mainspring", "scheduler"]
        return self.procs.start(cmd, env, self.tmp / f"{self.key}.log", data_dir)

    def reset(self) -> None:
        if self._open is not None:
            ctx, client, drop, _url = self._open
            self._open = None
            client.close()
            ctx.close()
            drop()

    def close(self) -> None:
        self.reset()
