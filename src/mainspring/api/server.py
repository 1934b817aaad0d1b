"""``serve``: run the web app in this process with uvicorn.

We bind the listening socket ourselves and hand it to uvicorn: a taken port becomes one clear
``ConfigError`` instead of a traceback from inside the server, and there is no window
between checking the port and using it.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.errors import ConfigError
from mainspring.settings import load_settings

# uvicorn configures (only) its own loggers; with a pre-bound socket it does not print the
# address, so we say it through its logger.
log = logging.getLogger("uvicorn.error")


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (with SO_REUSEADDR), or a ConfigError saying why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(
            f"cannot resolve web host {host!r} ({exc.strerror}); set MAINSPRING_WEB_HOST"
        ) from None
    family, kind, proto, _canon, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use; "
                "set MAINSPRING_WEB_PORT or stop the other process"
            ) from None
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror}); "
            "set MAINSPRING_WEB_HOST / MAINSPRING_WEB_PORT"
        ) from None
    return sock


def check_port_free(host: str, port: int) -> None:
    """Fail early (before starting other processes) if the web port cannot be bound."""
    bind_socket(host, port).close()


def serve(ctx: AppContext, config_file: Path | None = None) -> None:
    """Serve the API and console on ``web_host:web_port`` until interrupted; with
    ``web_processes`` > 1, that many processes share the one listening socket."""
    settings = ctx.settings
    host, port, processes = settings.web_host, settings.web_port, settings.web_processes
    sock = bind_socket(host, port)
    try:
        options: dict[str, Any] = {
            "host": host,
            "port": port,
            "log_level": "info",
            "proxy_headers": False,
            "server_header": False,
        }
        log.info("Mainspring console and API on http://%s:%d", host, sock.getsockname()[1])
        if processes == 1:
            uvicorn.Server(uvicorn.Config(create_app(ctx), **options)).run(sockets=[sock])
            return
        # Children build their own app (and database engine) from the same settings.
        if config_file is not None:
            os.environ["MAINSPRING_CONFIG"] = str(config_file)
        ctx.close()
        config = uvicorn.Config(APP_FACTORY, factory=True, workers=processes, **options)
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()


APP_FACTORY = "mainspring.api.server:app_from_environment"


def app_from_environment() -> Any:
    """The app of one web process among several (settings from the environment/config file;
    the parent has already migrated the database and written the secret key)."""
    ctx = AppContext.open(load_settings().with_secret_key(), migrate=False)
    return create_app(ctx)
