"""The supervisor with real child processes: restarts, ordered start, and nothing left behind.

Signal handling is tested through a driver process running a Supervisor on its main thread,
exactly as ``mainspring up`` does; restarts through a Supervisor on a thread of the test.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

from mainspring.runtime import ChildSpec, RestartBackoff, Supervisor

T = TypeVar("T")
pytestmark = pytest.mark.timeout(90)

# A child: writes "its pid [grandchild pids]" to argv[1], records the stop signal it gets in
# argv[1].sig, then sleeps. Modes: grandchild (one in its process group), escapee (one that
# leaves it with setsid), stubborn (ignores SIGTERM).
CHILD = """
import os, pathlib, signal, subprocess, sys, time
out = pathlib.Path(sys.argv[1])
modes = set(sys.argv[2:])
def on_signal(signum, frame):
    out.with_suffix(".sig").write_text(signal.Signals(signum).name)
    sys.exit(0)
if "stubborn" in modes:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
pids = [os.getpid()]
if "grandchild" in modes:
    pids.append(subprocess.Popen(sleep).pid)
if "escapee" in modes:
    pids.append(subprocess.Popen(sleep, start_new_session=True).pid)
tmp = out.with_suffix(".tmp")
tmp.write_text(" ".join(map(str, pids)))
tmp.replace(out)
while True:
    time.sleep(600)
"""

# Runs a Supervisor on its main thread, as `mainspring up` does; writes pids() once started.
DRIVER = """
import json, logging, pathlib, sys, threading
from mainspring.runtime import ChildSpec, Supervisor
config = json.loads(sys.argv[1])
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
children = [ChildSpec(c["name"], c["argv"]) for c in config["children"]]
supervisor = Supervisor(children, grace=config["grace"])
def report():
    if supervisor.started.wait(30):
        out = pathlib.Path(config["pids"])
        out.with_suffix(".tmp").write_text(json.dumps(supervisor.pids()))
        out.with_suffix(".tmp").replace(out)
threading.Thread(target=report, daemon=True).start()
supervisor.run()
print("supervisor returned", flush=True)
"""


def child(pid_file: Path, *modes: str) -> list[str]:
    return [sys.executable, "-c", CHILD, str(pid_file), *modes]


def poll(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Return the first truthy ``check()``; fail if none comes within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def read_pids(path: Path, timeout: float = 15.0) -> list[int]:
    text = poll(lambda: path.read_text() if path.exists() else None, timeout, f"{path.name}")
    return [int(pid) for pid in text.split()]


def alive(process: psutil.Process) -> bool:
    """Running and not a zombie (an orphaned zombie waits for init to reap it: it is dead)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Tracker:
    """Every process a test saw; at teardown none may be alive."""

    def __init__(self) -> None:
        self.processes: dict[int, psutil.Process] = {}

    def add(self, *pids: int) -> list[psutil.Process]:
        for pid in pids:
            if pid not in self.processes:
                try:
                    self.processes[pid] = psutil.Process(pid)
                except psutil.NoSuchProcess:
                    continue
        return [self.processes[pid] for pid in pids if pid in self.processes]

    def survivors(self) -> list[psutil.Process]:
        return [p for p in self.processes.values() if alive(p)]


@pytest.fixture
def tracker() -> Iterator[Tracker]:
    tracked = Tracker()
    yield tracked
    survivors = tracked.survivors()
    for process in survivors:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue
    assert not survivors, f"processes outlived the test: {survivors}"


@pytest.fixture
def run_in_thread(tracker: Tracker) -> Iterator[Callable[[Supervisor], None]]:
    """Run a Supervisor on a thread until the test ends; stop and join it even on failure."""
    running: list[tuple[Supervisor, threading.Thread]] = []

    def start(supervisor: Supervisor) -> None:
        thread = threading.Thread(target=supervisor.run, name="supervisor", daemon=True)
        thread.start()
        running.append((supervisor, thread))
        assert supervisor.started.wait(15), "children did not start"
        tracker.add(*supervisor.pids().values())

    yield start
    for supervisor, thread in running:
        supervisor.stop()
        thread.join(60)
        assert not thread.is_alive(), "Supervisor.run() did not return after stop()"


@pytest.fixture
def driver(tmp_path: Path, tracker: Tracker) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start the driver in a session of its own, like a terminal's foreground job."""
    started: list[subprocess.Popen[bytes]] = []

    def start(children: dict[str, list[str]], grace: float) -> subprocess.Popen[bytes]:
        config = {
            "children": [{"name": name, "argv": argv} for name, argv in children.items()],
            "grace": grace,
            "pids": str(tmp_path / "supervisor.json"),
        }
        with (tmp_path / "driver.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", DRIVER, json.dumps(config)],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        started.append(proc)
        tracker.add(proc.pid)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_child_killed_with_sigkill_is_restarted_with_a_new_pid(
    tmp_path: Path,
    run_in_thread: Callable[[Supervisor], None],
    tracker: Tracker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="mainspring.runtime")
    specs = [ChildSpec("a", child(tmp_path / "a.pid")), ChildSpec("b", child(tmp_path / "b.pid"))]
    supervisor = Supervisor(specs, backoff=lambda: RestartBackoff(initial=0.2))
    run_in_thread(supervisor)
    before = supervisor.pids()

    os.kill(before["a"], signal.SIGKILL)

    after = poll(lambda: supervisor.pids().get("a") not in (None, before["a"]), 10, "restart")
    assert after
    restarted = supervisor.pids()
    tracker.add(*restarted.values())
    assert restarted["b"] == before["b"]
    assert poll(lambda: read_pids(tmp_path / "a.pid")[0] == restarted["a"], 10, "new a.pid")
    [record] = [r for r in caplog.records if "restarting" in r.getMessage()]
    assert record.levelno == logging.WARNING
    context = vars(record)  # the structured ``extra`` of the log call
    assert (context["child"], context["exit_code"], context["delay"]) == ("a", -signal.SIGKILL, 0.2)
    assert "SIGKILL" in record.getMessage()


def test_crashed_child_takes_its_grandchildren_with_it(
    tmp_path: Path, run_in_thread: Callable[[Supervisor], None], tracker: Tracker
) -> None:
    pid_file = tmp_path / "a.pid"
    supervisor = Supervisor([ChildSpec("a", child(pid_file, "grandchild"))])
    run_in_thread(supervisor)
    parent, grandchild = tracker.add(*read_pids(pid_file))

    pid_file.unlink()
    parent.kill()

    poll(lambda: not alive(grandchild), 10, "the orphaned grandchild to be killed")
    tracker.add(*read_pids(pid_file))  # restarted, with a new grandchild


def test_children_start_in_order_each_after_the_previous_is_ready(
    tmp_path: Path, run_in_thread: Callable[[Supervisor], None]
) -> None:
    seen_by_ready: list[set[str]] = []

    def first_is_ready() -> None:
        read_pids(tmp_path / "a.pid")
        seen_by_ready.append(set(supervisor.pids()))

    supervisor = Supervisor(
        [
            ChildSpec("a", child(tmp_path / "a.pid"), ready=first_is_ready),
            ChildSpec("b", child(tmp_path / "b.pid")),
        ]
    )
    run_in_thread(supervisor)
    assert seen_by_ready == [{"a"}]
    assert set(supervisor.pids()) == {"a", "b"}


def test_failing_ready_check_stops_started_children_and_raises(
    tmp_path: Path, tracker: Tracker
) -> None:
    def never_ready() -> None:
        tracker.add(*read_pids(tmp_path / "a.pid"))
        raise RuntimeError("broker never answered")

    supervisor = Supervisor(
        [
            ChildSpec("a", child(tmp_path / "a.pid"), ready=never_ready),
            ChildSpec("b", child(tmp_path / "b.pid")),
        ]
    )
    handler_before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RuntimeError, match="never answered"):
        supervisor.run()  # on the main thread: installs, then restores, signal handlers
    assert signal.getsignal(signal.SIGTERM) is handler_before
    assert not tracker.survivors()
    assert not (tmp_path / "b.pid").exists()
    assert not supervisor.started.is_set()


def test_ctrl_c_reaches_only_the_supervisor_which_stops_everything(
    tmp_path: Path, driver: Callable[..., subprocess.Popen[bytes]], tracker: Tracker
) -> None:
    proc = driver(
        {"a": child(tmp_path / "a.pid", "grandchild", "escapee"), "b": child(tmp_path / "b.pid")},
        grace=10,
    )
    a_pid, *grandchildren = read_pids(tmp_path / "a.pid")
    [b_pid] = read_pids(tmp_path / "b.pid")
    everyone = tracker.add(a_pid, *grandchildren, b_pid)
    assert len(everyone) == 4
    assert json.loads(read_pids_json(tmp_path / "supervisor.json")) == {"a": a_pid, "b": b_pid}
    assert os.getsid(a_pid) == a_pid != os.getsid(proc.pid)

    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C

    assert proc.wait(timeout=30) == 0
    assert [p for p in everyone if alive(p)] == []
    # The children got the supervisor's SIGTERM, not the terminal's SIGINT.
    assert (tmp_path / "a.sig").read_text() == "SIGTERM"
    assert (tmp_path / "b.sig").read_text() == "SIGTERM"
    log = (tmp_path / "driver.log").read_text()
    assert "received SIGINT" in log
    assert log.index("stopping b") < log.index("stopping a")  # reverse start order
    assert "did not stop within" not in log
    assert "supervisor returned" in log


def test_child_ignoring_sigterm_is_killed_after_the_grace_period(
    tmp_path: Path, driver: Callable[..., subprocess.Popen[bytes]], tracker: Tracker
) -> None:
    grace = 1.0
    proc = driver(
        {
            "polite": child(tmp_path / "p.pid"),
            # SIG_IGN is inherited: its grandchildren ignore SIGTERM too, one outside the group.
            "stubborn": child(tmp_path / "s.pid", "stubborn", "grandchild", "escapee"),
        },
        grace=grace,
    )
    polite = tracker.add(*read_pids(tmp_path / "p.pid"))
    stubborn = tracker.add(*read_pids(tmp_path / "s.pid"))
    assert len(stubborn) == 3
    read_pids_json(tmp_path / "supervisor.json")

    asked = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    took = time.monotonic() - asked

    assert took >= grace
    assert not [p for p in polite + stubborn if alive(p)]
    assert (tmp_path / "p.sig").read_text() == "SIGTERM"
    assert not (tmp_path / "s.sig").exists()
    assert "stubborn did not stop within 1 s; killing it" in (tmp_path / "driver.log").read_text()


def read_pids_json(path: Path) -> str:
    return poll(lambda: path.read_text() if path.exists() else None, 15, path.name)
