"""``mainspring worker`` option errors: one clear line, non-zero exit, no worker started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _worker(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"MAINSPRING_DATA_DIR": str(tmp_path), "MAINSPRING_BROKER_URL": "redis://127.0.0.1:1/0"}
    return subprocess.run(
        [sys.executable, "-m", "mainspring", "worker", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
    )


@pytest.mark.parametrize("queues", ["default,bad queue", "a/b", "q;rm"])
def test_invalid_queue_name_is_refused_with_a_clear_error(tmp_path: Path, queues: str) -> None:
    done = _worker(tmp_path, "-Q", queues)
    assert done.returncode == 1
    assert "invalid queue name" in done.stderr
    assert "Traceback" not in done.stderr


def test_invalid_pool_is_refused(tmp_path: Path) -> None:
    done = _worker(tmp_path, "--pool", "gevent")
    assert done.returncode == 2
    assert "gevent" in done.stderr
