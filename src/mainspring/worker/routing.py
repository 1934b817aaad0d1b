"""Queue names and routes: what a worker consumes and where a task goes. Pure, no I/O.

Every worker also consumes a queue named after its host (``host_queue``), so one run can
target one worker and a broadcast can hand each live worker its own copy.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

DEFAULT_QUEUE = "default"
HOST_QUEUE_PREFIX = "host."
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,199}$")
HOSTNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@\-]{0,199}$")


def check_queue_name(name: str) -> str:
    """Return ``name`` if brokers and shells can carry it; raise ``ValueError`` saying why."""
    if not QUEUE_NAME.fullmatch(name):
        raise ValueError(
            f"invalid queue name {name!r}: use 1-200 letters, digits, '_', '.', ':' or '-', "
            "not starting with a punctuation mark"
        )
    return name


def check_hostname(name: str) -> str:
    """Return a worker host name if valid (``name@host`` allowed); raise ``ValueError``."""
    if not HOSTNAME.fullmatch(name):
        raise ValueError(
            f"invalid worker hostname {name!r}: use letters, digits, '_', '.', ':', '@' or '-'"
        )
    return name


def host_queue(hostname: str) -> str:
    """The queue only the worker called ``hostname`` consumes."""
    return HOST_QUEUE_PREFIX + hostname


def worker_queues(queues: list[str], hostname: str) -> list[str]:
    """The queues a worker consumes: those asked for, then its own host queue."""
    wanted = list(dict.fromkeys(queues or [DEFAULT_QUEUE]))
    own = host_queue(hostname)
    return [*wanted, own] if own not in wanted else wanted


def celery_routes(routes: dict[str, str]) -> dict[str, dict[str, str]]:
    """Mainspring's ``{task name or glob: queue}`` as Celery's ``task_routes``."""
    return {pattern: {"queue": queue} for pattern, queue in routes.items()}


def route_for(task: str, routes: dict[str, str], default: str = DEFAULT_QUEUE) -> str:
    """The queue a task goes to: the first matching route (exact name, then glob)."""
    if task in routes:
        return routes[task]
    for pattern, queue in routes.items():
        if fnmatchcase(task, pattern):
            return queue
    return default
