"""``mainspring status``: one line per part of the system; exit 1 when something is down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from mainspring.context import AppContext
from mainspring.db.models import Lease, Worker
from mainspring.observability.probe import RECORDER_PREFIX, SCHEDULER_PREFIX
from mainspring.services.clock import utcnow
from mainspring.settings import Settings


def _status(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("MAINSPRING_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "mainspring", "status", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_status_of_an_empty_system_says_what_is_down(ctx: AppContext, data_dir: Path) -> None:
    done = _status({"MAINSPRING_DATA_DIR": str(data_dir)})
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert any(line.split()[:2] == ["database", "ok"] for line in lines)
    assert any(line.startswith("schedulers") and "DOWN  none alive" in line for line in lines)
    assert any(line.startswith("broker") and "not configured" in line for line in lines)


@pytest.mark.redis
def test_status_is_zero_when_every_role_is_alive(data_dir: Path, redis_url: str) -> None:
    ctx = AppContext.open(Settings(data_dir=data_dir, broker_url=redis_url))
    now = utcnow()
    with ctx.session() as s:
        for prefix in (SCHEDULER_PREFIX, RECORDER_PREFIX):
            s.add(
                Lease(
                    name=f"{prefix}h:1",
                    holder="h:1",
                    fencing_token=0,
                    expires_at=now + timedelta(minutes=5),
                )
            )
        s.add(
            Worker(
                hostname="w1@h", status="online", queues=["default"], registered_tasks=[],
                first_seen_at=now, last_heartbeat_at=now, updated_at=now, active=0, processed=0,
                software={}, capabilities={},
            )
        )  # fmt: skip
    ctx.close()
    env = {"MAINSPRING_DATA_DIR": str(data_dir), "MAINSPRING_BROKER_URL": redis_url}
    done = _status(env, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    body = json.loads(done.stdout)
    assert body["ok"] is True
    assert body["checks"]["schedulers"]["detail"] == "1 alive (h:1)"
    assert body["checks"]["workers"]["detail"] == "1 online, 0 offline"
    assert body["queues"]["default"] == 0


def test_unreachable_database_is_one_error_line(tmp_path: Path) -> None:
    env = {"MAINSPRING_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    done = _status(env)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ")
    assert len(done.stderr.strip().splitlines()) == 1
