"""Task submission over HTTP: Mainspring (``POST /api/v1/tasks`` and the Flower-compatible
``POST /api/task/async-apply/{task}``) and Flower 2.x itself, side by side in one run.

Mainspring runs as ``mainspring web --processes 2`` on a fresh PostgreSQL database with the
local Redis as broker; every request authenticates with a bearer token, stores a run and
publishes the message. Flower runs as ``celery flower`` on the same Redis, with its API opened
without authentication (``FLOWER_UNAUTHENTICATED_API``, its cheapest setting) and the same
task name registered in its app (``flower_tasks.py``), so its answers are real submissions.
Every target is checked with one request first (a non-2xx answer stops the bench).

Per target: the latency of single requests one after another (no load), then ``--rounds``
runs of ``wrk`` (Debian package; ``--duration`` s at ``--connections``, after a warm-up),
each with requests/s, p99, non-2xx answers, socket errors and the CPU the server's processes
used per request (from their CPU times). On a shared machine requests/s mostly measures the
neighbours; CPU per request moves less (contention still inflates it) and compares the two
servers of one run fairly.

    apt-get install wrk; pip install flower   # bench-only tools, not Mainspring dependencies
    python bench/api_submit.py --duration 15 --connections 32 --rounds 3
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import psycopg
import redis

from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.services.auth import create_api_token
from mainspring.services.users import create_user
from mainspring.settings import Settings

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "api_submit.json"
ADMIN_URL = "postgresql://postgres@127.0.0.1/postgres"
LUA = """
wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
{auth}
"""


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited while starting ({url})")
        try:
            urllib.request.urlopen(url, timeout=1)  # noqa: S310 - loopback
            return
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP answer (even 401/404) means it is up
                return
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def wrk(url: str, body: str, token: str | None, seconds: int, connections: int) -> dict[str, Any]:
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA.format(body=body, auth=auth))
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name, url]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "requests_per_s": round(rate),
        "p99_ms": round(float(p99.group(1)) * scale[p99.group(2)], 1) if p99 else None,
        "requests": int(total.group(1)) if total else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(n) for n in sock.groups()) if sock else 0,
    }


def start_mainspring(db_url: str, broker: str, data_dir: Path, port: int) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINSPRING_")}
    env.update(
        MAINSPRING_DATABASE_URL=db_url,
        MAINSPRING_BROKER_URL=broker,
        MAINSPRING_DATA_DIR=str(data_dir),
        MAINSPRING_WEB_PORT=str(port),
    )
    command = [sys.executable, "-m", "mainspring", "web", "--processes", "2"]
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def start_flower(broker: str, port: int) -> Any:
    env = {
        **os.environ,
        "BENCH_BROKER": broker,
        "PYTHONPATH": str(HERE),
        "FLOWER_UNAUTHENTICATED_API": "true",
    }
    command = [sys.executable, "-m", "celery", "-A", "flower_tasks", "flower", f"--port={port}",
               "--address=127.0.0.1", "--logging=warning"]  # fmt: skip
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    body: str
    token: str | None
    server: subprocess.Popen[bytes]


def post(conn: http.client.HTTPConnection, target: Target) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if target.token:
        headers["Authorization"] = f"Bearer {target.token}"
    conn.request("POST", urlsplit(target.url).path, target.body, headers)
    response = conn.getresponse()
    return response.status, response.read()


def single_requests(target: Target, count: int) -> dict[str, Any]:
    """Latency of requests sent one at a time on one keep-alive connection; the first
    answer must be a 2xx, or the comparison would measure errors."""
    parts = urlsplit(target.url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    status, body = post(conn, target)
    if not 200 <= status < 300:
        raise SystemExit(f"{target.name}: answered {status}: {body[:300]!r}")
    times = []
    for _ in range(count):
        started = time.perf_counter()
        status, _ = post(conn, target)
        times.append((time.perf_counter() - started) * 1000)
        if not 200 <= status < 300:
            raise SystemExit(f"{target.name}: answered {status} during the single requests")
    conn.close()
    times.sort()
    return {
        "single_p50_ms": round(statistics.median(times), 2),
        "single_p99_ms": round(times[int(len(times) * 0.99) - 1], 2),
    }


def cpu_seconds(proc: subprocess.Popen[bytes]) -> float:
    """CPU time used so far by a server and all its processes."""
    root = psutil.Process(proc.pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def measure(target: Target, seconds: int, connections: int) -> dict[str, Any]:
    before = cpu_seconds(target.server)
    result = wrk(target.url, target.body, target.token, seconds, connections)
    used = cpu_seconds(target.server) - before
    done = max(result["requests"], 1)
    result["server_cpu_ms_per_request"] = round(used * 1000 / done, 3)
    return result


def create_database() -> tuple[str, str]:
    """A fresh database: its name and its URL."""
    db_name = f"ms_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    return db_name, f"postgresql+psycopg://postgres@127.0.0.1/{db_name}"


def bench_token(db_url: str, data_dir: Path, broker: str) -> str:
    ctx = AppContext.open(Settings(database_url=db_url, data_dir=data_dir, broker_url=broker))
    with ctx.session() as session:
        user = create_user(session, "bench", "correct-horse-1", Role.OPERATOR)
        token, _ = create_api_token(session, user, "bench")
    ctx.close()
    return token


def drop_queues(broker: str) -> None:
    """Remove the messages nobody consumes (both sides' queues, with kombu's priority keys)."""
    client = redis.Redis.from_url(broker)
    for pattern in ("default*", "bench-flower*"):
        keys = list(client.scan_iter(match=pattern))
        if keys:
            client.delete(*keys)


def run_targets(targets: list[Target], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for target in targets:
        results[target.name] = {**single_requests(target, args.single), "rounds": []}
    for round_no in range(args.rounds):
        for target in targets:  # interleaved, so a busy moment hits every target alike
            wrk(target.url, target.body, target.token, 3, args.connections)  # warm-up
            result = measure(target, args.duration, args.connections)
            results[target.name]["rounds"].append(result)
            print(f"round {round_no + 1} {target.name:40s} {result}", flush=True)
    return results


def spread(values: list[float], fmt: str = "g") -> str:
    """``low-high`` over the rounds (one number when they agree)."""
    low, high = min(values), max(values)
    return f"{low:{fmt}}" if low == high else f"{low:{fmt}}-{high:{fmt}}"


def print_table(results: dict[str, dict[str, Any]], connections: int) -> None:
    print(
        f"\n| endpoint ({connections} connections) | requests/s | p99 | non-2xx | socket errors "
        "| server CPU per request | single request p50 / p99 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        rounds = r["rounds"]
        rate = spread([x["requests_per_s"] for x in rounds])
        p99 = spread([x["p99_ms"] for x in rounds])
        bad = sum(x["non_2xx"] for x in rounds)
        broken = sum(x["socket_errors"] for x in rounds)
        total = sum(x["requests"] for x in rounds)
        cpu = spread([x["server_cpu_ms_per_request"] for x in rounds], ".2f")
        single = f"{r['single_p50_ms']} / {r['single_p99_ms']} ms"
        print(f"| {name} | {rate} | {p99} ms | {bad} of {total} | {broken} | {cpu} ms | {single} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--single", type=int, default=200, help="single requests per target")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/11")
    args = parser.parse_args()
    db_name, db_url = create_database()
    data_dir = Path(tempfile.mkdtemp(prefix="ms-api-bench-"))
    token = bench_token(db_url, data_dir, args.broker)
    ms_port, flower_port = free_port(), free_port()
    ms = start_mainspring(db_url, args.broker, data_dir, ms_port)
    flower = start_flower(args.broker, flower_port)
    try:
        base = f"http://127.0.0.1:{ms_port}"
        wait_http(f"{base}/healthz", ms)
        wait_http(f"http://127.0.0.1:{flower_port}/api/workers", flower)
        echo = {"kwargs": {"message": "hi"}}
        targets = [
            Target(
                "mainspring POST /api/v1/tasks",
                f"{base}/api/v1/tasks",
                json.dumps({"task": "mainspring.echo", **echo}),
                token,
                ms,
            ),
            Target(
                "mainspring POST /api/task/async-apply",
                f"{base}/api/task/async-apply/mainspring.echo",
                json.dumps(echo),
                token,
                ms,
            ),
            Target(
                "flower POST /api/task/async-apply",
                f"http://127.0.0.1:{flower_port}/api/task/async-apply/mainspring.echo",
                json.dumps(echo),
                None,
                flower,
            ),
        ]
        results = run_targets(targets, args)
    finally:
        stop(ms)
        stop(flower)
        drop_queues(args.broker)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    print_table(results, args.connections)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(),
                "connections": args.connections,
                "duration_s": args.duration,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
