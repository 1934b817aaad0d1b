"""Following a run's log as Server-Sent Events: new chunks as they are written, an ``end``
event at the final state, resuming with ``Last-Event-ID``, and stopping when the client goes
(through the test client and through a real uvicorn server)."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mainspring.api import runs as runs_api
from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role, RunState
from mainspring.db.models import Run, RunLog
from tests.helpers import poll
from tests.integration.test_api_runs_actions import BASE, ROLES, Auth, add_run


@pytest.mark.parametrize("role", ROLES)
def test_following_a_log_is_open_to_every_role(
    client: TestClient, auth: Auth, ctx: AppContext, role: Role | None
) -> None:
    add_run(ctx, "done", RunState.SUCCESS)
    response = client.get("/api/v1/runs/done/logs/follow", headers=auth[role])
    assert response.status_code == (401 if role is None else 200)
    if role is not None:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "event: end" in response.text


def events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs from an SSE line stream."""
    name = None
    for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: ") and name:
            yield name, json.loads(line.removeprefix("data: "))
            name = None


def add_log(ctx: AppContext, run_id: str, seq: int, text: str) -> None:
    with ctx.session() as s:
        s.add(RunLog(run_id=run_id, seq=seq, at=BASE, stream="stdout", text=text))


@pytest.fixture
def fast_follow(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Poll every 20 ms; the returned event is set when a follow's generator has ended."""
    monkeypatch.setattr(runs_api, "FOLLOW_POLL_S", 0.02)
    ended = threading.Event()
    follow = runs_api._follow

    async def tracked(*args: Any) -> AsyncIterator[str]:
        try:
            async for chunk in follow(*args):
                yield chunk
        finally:
            ended.set()

    monkeypatch.setattr(runs_api, "_follow", tracked)
    return ended


def test_following_streams_new_lines_then_ends_with_the_final_state(
    client: TestClient, auth: Auth, ctx: AppContext, fast_follow: threading.Event
) -> None:
    add_run(ctx, "live", RunState.STARTED)
    add_log(ctx, "live", 0, "first\n")
    seen: list[tuple[str, dict[str, Any]]] = []
    url = "/api/v1/runs/live/logs/follow"
    with client.stream("GET", url, headers=auth[Role.VIEWER]) as response:
        stream = events(response.iter_lines())
        seen.append(next(stream))  # the first line is there before the run goes on
        add_log(ctx, "live", 1, "second\n")
        with ctx.session() as s:  # the recorder writes a final state with the last chunks
            run = s.get(Run, "live")
            assert run is not None
            s.add(RunLog(run_id="live", seq=2, at=BASE, stream="stdout", text="last\n"))
            run.state = RunState.SUCCESS.value
        seen += list(stream)
    logs = [data["text"] for name, data in seen if name == "log"]
    assert logs == ["first\n", "second\n", "last\n"]
    assert [data["seq"] for name, data in seen if name == "log"] == [0, 1, 2]
    assert seen[-1] == ("end", {"state": "SUCCESS", "last_seq": 2})
    assert fast_follow.is_set()


def test_following_resumes_after_the_last_event_id(
    client: TestClient, auth: Auth, ctx: AppContext
) -> None:
    add_run(ctx, "done", RunState.FAILURE)
    for seq in range(3):
        add_log(ctx, "done", seq, f"line {seq}\n")
    headers = {**auth[Role.VIEWER], "Last-Event-ID": "1"}
    text = client.get("/api/v1/runs/done/logs/follow", headers=headers).text
    logs = [d["text"] for name, d in events(iter(text.splitlines())) if name == "log"]
    assert logs == ["line 2\n"]
    assert "id: 2\n" in text


def test_following_stops_when_the_client_goes_away(
    client: TestClient, auth: Auth, ctx: AppContext, fast_follow: threading.Event
) -> None:
    add_run(ctx, "forever", RunState.STARTED)
    add_log(ctx, "forever", 0, "tick\n")
    with client.stream(
        "GET", "/api/v1/runs/forever/logs/follow", headers=auth[Role.VIEWER]
    ) as response:
        assert next(events(response.iter_lines()))[0] == "log"
        assert not fast_follow.is_set()
    poll(fast_follow.is_set, timeout=10, what="the follow generator to stop")


def test_following_an_unknown_run_is_a_404(client: TestClient, auth: Auth) -> None:
    response = client.get("/api/v1/runs/nope/logs/follow", headers=auth[Role.VIEWER])
    assert response.status_code == 404


def test_following_stops_when_a_real_http_client_disconnects(
    ctx: AppContext, auth: Auth, fast_follow: threading.Event
) -> None:
    """Through uvicorn (as ``mainspring web`` serves it): a closed connection ends the poll."""
    import httpx
    import uvicorn

    from mainspring.api.server import bind_socket

    add_run(ctx, "forever", RunState.STARTED)
    add_log(ctx, "forever", 0, "tick\n")
    web = create_app(ctx)
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(web, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        poll(lambda: server.started, timeout=20, what="uvicorn to start")
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1/runs/forever/logs/follow"
        with httpx.stream("GET", url, headers=auth[Role.VIEWER], timeout=10) as response:
            assert response.status_code == 200
            assert next(events(response.iter_lines()))[0] == "log"
            assert not fast_follow.is_set()
        poll(fast_follow.is_set, timeout=10, what="the follow generator to stop")
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
    assert not thread.is_alive()
