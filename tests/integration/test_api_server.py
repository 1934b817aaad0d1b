"""``serve`` and the port check: a taken port is one clear ConfigError, never a traceback."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from mainspring.api.server import bind_socket, check_port_free, serve
from mainspring.context import AppContext
from mainspring.errors import ConfigError


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_serve_refuses_a_port_in_use(ctx: AppContext, taken_port: int) -> None:
    busy = AppContext(
        settings=ctx.settings.model_copy(update={"web_host": "127.0.0.1", "web_port": taken_port}),
        engine=ctx.engine,
        sessions=ctx.sessions,
    )
    expected = (
        f"port {taken_port} on 127.0.0.1 is already in use; "
        "set MAINSPRING_WEB_PORT or stop the other process"
    )
    with pytest.raises(ConfigError) as info:
        serve(busy)
    assert str(info.value) == expected
    assert info.value.__cause__ is None


def test_port_check_refuses_a_port_in_use(taken_port: int) -> None:
    with pytest.raises(ConfigError, match="already in use"):
        check_port_free("127.0.0.1", taken_port)


def test_bind_socket_returns_a_bound_socket_on_a_free_port() -> None:
    sock = bind_socket("127.0.0.1", 0)
    try:
        host, port = sock.getsockname()
        assert host == "127.0.0.1"
        assert port > 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
    finally:
        sock.close()
