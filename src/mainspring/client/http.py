"""The HTTP client: everything an application does with Mainspring, over ``/api/v1``.

    from mainspring import Client
    with Client("http://127.0.0.1:8470", token="ms_...") as ms:
        ms.upsert_job("nightly-report", "reports.build", cron="0 2 * * *", timezone="Asia/Shanghai")
        run = ms.submit("tasks.add", args=[1, 2], idempotency_key="order-42")
        print(ms.wait(run.id, timeout=30).result)

Every failure is a ``ClientError`` subclass that says what was wrong (the server's message and,
for bad input, the field); results are small typed records that keep the full JSON in ``raw``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from mainspring.client.errors import (
    ClientError,
    ServerUnavailable,
    error_for,
)
from mainspring.client.local import trigger_from
from mainspring.core.states import FINAL_STATES

API = "/api/v1"
_FINAL = {s.value for s in FINAL_STATES}


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


@dataclass(frozen=True)
class Job:
    id: int
    name: str
    task: str
    enabled: bool
    version: int
    next_fire_at: datetime | None
    last_state: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Job:
        return cls(
            id=data["id"],
            name=data["name"],
            task=data["task"],
            enabled=data["enabled"],
            version=data["version"],
            next_fire_at=_time(data.get("next_fire_at")),
            last_state=data.get("last_state"),
            raw=data,
        )


@dataclass(frozen=True)
class Run:
    id: str
    task: str
    state: str
    worker: str | None
    result: Any
    exception_type: str | None
    exception_message: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.state in _FINAL

    @classmethod
    def of(cls, data: dict[str, Any]) -> Run:
        return cls(
            id=data["id"],
            task=data["task"],
            state=data["state"],
            worker=data.get("worker"),
            result=data.get("result"),
            exception_type=data.get("exception_type"),
            exception_message=data.get("exception_message"),
            raw=data,
        )


@dataclass(frozen=True)
class Submitted:
    id: str
    state: str
    replayed: bool  # True: the idempotency key returned the first submission
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class Worker:
    hostname: str
    status: str
    queues: list[str]
    raw: dict[str, Any] = field(repr=False, compare=False)


class Client:
    """A session with one Mainspring web server, authenticated by an API token (or a user's
    name and password, which costs a password hash per request on the server)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        auth = (username, password) if username is not None and password is not None else None
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers=headers,
            auth=auth,
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- jobs -------------------------------------------------------------------------

    def list_jobs(self, **filters: Any) -> list[Job]:
        """Jobs by name; filters: tag, state (enabled|paused), last_state, queue, task, text."""
        jobs: list[Job] = []
        offset = 0
        while True:
            page = self._call("GET", "/jobs", params={**filters, "limit": 500, "offset": offset})
            jobs += [Job.of(item) for item in page["items"]]
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                return jobs

    def get_job(self, name: str) -> Job:
        return Job.of(self._call("GET", f"/jobs/by-name/{_segment(name)}"))

    def upsert_job(
        self,
        name: str,
        task: str | None = None,
        *,
        cron: str | None = None,
        every_ms: int | None = None,
        at: datetime | str | None = None,
        manual: bool = False,
        trigger: dict[str, Any] | None = None,
        **fields: Any,
    ) -> tuple[Job, bool]:
        """Create or replace the job called ``name``; True when it was created. Other fields
        (args, kwargs, queue, timezone, options, tags, policies…) as the API takes them;
        ``workflow={...}`` instead of ``task`` runs a workflow."""
        body = {"task": task, "trigger": trigger_from(cron, every_ms, at, manual, trigger)}
        body.update(fields)
        body = {k: v for k, v in body.items() if v is not None}
        response = self._request("PUT", f"/jobs/by-name/{_segment(name)}", json=_jsonable(body))
        return Job.of(response.json()), response.status_code == 201

    def delete_job(self, name: str) -> None:
        self._call("DELETE", f"/jobs/by-name/{_segment(name)}")

    def pause_job(self, name: str) -> Job:
        return Job.of(self._call("POST", f"/jobs/{self.get_job(name).id}/pause"))

    def resume_job(self, name: str) -> Job:
        return Job.of(self._call("POST", f"/jobs/{self.get_job(name).id}/resume"))

    def run_job_now(
        self,
        name: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> str:
        """Start the job now (its schedule does not move); returns the run id."""
        body = {k: v for k, v in {"args": args, "kwargs": kwargs}.items() if v is not None}
        answer = self._call("POST", f"/jobs/{self.get_job(name).id}/run", json=body)
        return str(answer["run_id"])

    def preview(
        self, trigger: dict[str, Any], timezone: str | None = None, n: int = 5
    ) -> list[datetime]:
        """The next ``n`` fire times (UTC) of a trigger, as the scheduler computes them."""
        body = {"trigger": trigger, "n": n, **({"timezone": timezone} if timezone else {})}
        answer = self._call("POST", "/jobs/preview", json=body)
        return [datetime.fromisoformat(f["utc"]) for f in answer["fire_times"]]

    # --- tasks and runs ---------------------------------------------------------------

    def submit(
        self,
        task: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Submitted:
        """Submit a task now (or with ``countdown``/``eta``); options: queue, worker,
        priority, expires, retry, soft_time_limit, time_limit, broadcast."""
        body: dict[str, Any] = {"task": task, "args": args or [], "kwargs": kwargs or {}}
        body["options"] = {k: v for k, v in options.items() if v is not None}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        data = self._call("POST", "/tasks", json=_jsonable(body))
        return Submitted(data["id"], data["state"], bool(data.get("replayed")), data)

    def get_run(self, run_id: str) -> Run:
        return Run.of(self._call("GET", f"/runs/{_segment(run_id)}"))

    def list_runs(self, limit: int = 50, **filters: Any) -> list[Run]:
        """The newest runs; filters: job_id, task, state, worker, queue, trigger, created_after,
        created_before."""
        page = self._call("GET", "/runs", params={**filters, "limit": limit})
        return [Run.of(item) for item in page["items"]]

    def wait(self, run_id: str, timeout: float = 60.0, interval: float = 0.25) -> Run:
        """Poll until the run reaches a final state; ``TimeoutError`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if run.finished:
                return run
            if time.monotonic() >= deadline:
                raise TimeoutError(f"run {run_id} still {run.state} after {timeout} s")
            time.sleep(interval)

    def logs(self, run_id: str, after_seq: int = -1) -> tuple[str, int]:
        """The run's output after ``after_seq`` and the last sequence number."""
        data = self._call("GET", f"/runs/{_segment(run_id)}/logs", params={"after_seq": after_seq})
        return str(data["text"]), int(data["last_seq"])

    def follow_logs(self, run_id: str) -> Iterator[str]:
        """Yield the run's output as it is written, until the run ends (Server-Sent Events)."""
        path = f"{API}/runs/{_segment(run_id)}/logs/follow"
        try:
            with self._http.stream("GET", path, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_for(response.status_code, _detail(response))
                event = ""
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line.partition(":")[2].strip()
                    elif line.startswith("data:") and event in ("", "log"):
                        yield str(json.loads(line.partition(":")[2]).get("text", ""))
                    elif line.startswith("data:") and event == "end":
                        return
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"cannot follow the logs of run {run_id}: {exc}") from exc

    def revoke(self, run_id: str) -> None:
        self._call("POST", f"/runs/{_segment(run_id)}/revoke")

    def terminate(self, run_id: str, signal: str = "SIGTERM") -> None:
        self._call("POST", f"/runs/{_segment(run_id)}/terminate", json={"signal": signal})

    # --- workers ----------------------------------------------------------------------

    def list_workers(self) -> list[Worker]:
        data = self._call("GET", "/workers")
        return [
            Worker(w["hostname"], w["status"], list(w.get("queues") or []), w)
            for w in data["items"]
        ]

    def ping(self, hostname: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/workers/{_segment(hostname)}/ping"))

    # --- plumbing ---------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        return response.json() if response.content else None

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, f"{API}{path}", **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"cannot reach {self._http.base_url}: {exc}") from exc
        if response.status_code >= 400:
            raise error_for(response.status_code, _detail(response))
        return response


def _segment(value: str) -> str:
    """One path segment, escaped (a job name may hold spaces or colons)."""
    from urllib.parse import quote

    return quote(value, safe="")


def _detail(response: httpx.Response) -> Any:
    try:
        return response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        return response.text or response.reason_phrase


def _jsonable(value: Any) -> Any:
    """Datetimes become ISO strings; everything else must already be JSON."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


__all__ = ["Client", "ClientError", "Job", "Run", "Submitted", "Worker"]
