"""The note ``mainspring up`` leaves for other processes about its embedded broker.

``mainspring.settings.read_embedded_state`` reads it, so a CLI command or worker started later
finds the broker without configuration. It holds the broker password, hence mode 0600.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mainspring.settings import EMBEDDED_STATE_FILE

STATE_VERSION = 1


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only, even if the file already existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)


def write_embedded_state(data_dir: Path, broker_url: str) -> Path:
    """Publish the embedded broker's URL in ``data_dir/run/embedded.json``; return its path."""
    path = data_dir / EMBEDDED_STATE_FILE
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    state = {"version": STATE_VERSION, "broker_url": broker_url, "pid": os.getpid()}
    tmp = path.with_name(path.name + ".tmp")
    write_private(tmp, json.dumps(state))
    tmp.replace(path)
    return path


def remove_embedded_state(data_dir: Path) -> None:
    """Withdraw the note when the embedded broker stops, so nobody tries a dead URL."""
    (data_dir / EMBEDDED_STATE_FILE).unlink(missing_ok=True)
