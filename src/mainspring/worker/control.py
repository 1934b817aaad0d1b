"""Remote control of workers, typed for the API and console: thin wrappers over Celery's
broadcast commands, each naming its destination hosts (None = all) and a reply timeout.

Replies are ``{hostname: answer}``; a worker that does not answer within the timeout is
simply absent, so callers can tell "no answer" from "answered nothing".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mainspring.worker.routing import check_queue_name

Replies = dict[str, Any]


@dataclass(frozen=True)
class Control:
    app: Any
    timeout: float = 1.0

    def _inspect(self, hosts: list[str] | None) -> Any:
        return self.app.control.inspect(destination=hosts, timeout=self.timeout)

    def _broadcast(
        self, command: str, hosts: list[str] | None, reply: bool = True, **arguments: Any
    ) -> Replies:
        replies: list[dict[str, Any]] | None = self.app.control.broadcast(
            command, arguments=arguments, destination=hosts, reply=reply, timeout=self.timeout
        )
        merged: Replies = {}
        for answers in replies or []:
            for host, answer in answers.items():
                merged[str(host)] = answer
        return merged

    def ping(self, hosts: list[str] | None = None) -> Replies:
        return self._broadcast("ping", hosts)

    def active(self, hosts: list[str] | None = None) -> Replies:
        """Runs executing now, per worker."""
        return dict(self._inspect(hosts).active() or {})

    def reserved(self, hosts: list[str] | None = None) -> Replies:
        """Runs a worker has taken from the broker but not started."""
        return dict(self._inspect(hosts).reserved() or {})

    def scheduled(self, hosts: list[str] | None = None) -> Replies:
        """Runs waiting on a worker for their ETA (retries with a countdown)."""
        return dict(self._inspect(hosts).scheduled() or {})

    def registered(self, hosts: list[str] | None = None) -> Replies:
        return dict(self._inspect(hosts).registered() or {})

    def active_queues(self, hosts: list[str] | None = None) -> dict[str, list[str]]:
        replies = self._inspect(hosts).active_queues() or {}
        return {h: [str(q["name"]) for q in qs or []] for h, qs in replies.items()}

    def stats(self, hosts: list[str] | None = None) -> Replies:
        return dict(self._inspect(hosts).stats() or {})

    def pool_grow(self, n: int = 1, hosts: list[str] | None = None) -> Replies:
        return self._broadcast("pool_grow", hosts, n=_positive(n))

    def pool_shrink(self, n: int = 1, hosts: list[str] | None = None) -> Replies:
        return self._broadcast("pool_shrink", hosts, n=_positive(n))

    def autoscale(self, max_: int, min_: int, hosts: list[str] | None = None) -> Replies:
        """Set the pool's bounds (workers started with autoscaling, prefork)."""
        if not 0 <= min_ <= max_:
            raise ValueError("autoscale needs 0 <= min <= max")
        return self._broadcast("autoscale", hosts, max=max_, min=min_)

    def add_consumer(self, queue: str, hosts: list[str] | None = None) -> Replies:
        return self._broadcast("add_consumer", hosts, queue=check_queue_name(queue))

    def cancel_consumer(self, queue: str, hosts: list[str] | None = None) -> Replies:
        return self._broadcast("cancel_consumer", hosts, queue=check_queue_name(queue))

    def shutdown(self, hosts: list[str]) -> Replies:
        """Warm shutdown: running tasks finish first. Hosts must be named (no 'all')."""
        if not hosts:
            raise ValueError("name the workers to shut down")
        return self._broadcast("shutdown", hosts, reply=False)


def _positive(n: int) -> int:
    if n < 1:
        raise ValueError("n must be at least 1")
    return n
