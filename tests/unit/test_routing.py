from __future__ import annotations

import pytest

from mainspring.errors import ConfigError
from mainspring.settings import load_settings
from mainspring.worker.routing import (
    celery_routes,
    check_queue_name,
    host_queue,
    route_for,
    worker_queues,
)


@pytest.mark.parametrize("name", ["default", "queue_add", "db.backup", "eu-west:1"])
def test_ordinary_queue_names_are_accepted(name: str) -> None:
    assert check_queue_name(name) == name


@pytest.mark.parametrize("name", ["", "bad queue", "a/b", "-x", "q;rm", "x" * 201, "队列"])
def test_queue_names_with_invalid_characters_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid queue name"):
        check_queue_name(name)


def test_a_worker_also_consumes_its_own_host_queue_once() -> None:
    assert worker_queues(["celery", "queue_add"], "a@h") == ["celery", "queue_add", "host.a@h"]
    assert worker_queues([], "a@h") == ["default", "host.a@h"]
    assert worker_queues(["x", "x", host_queue("a@h")], "a@h") == ["x", "host.a@h"]


def test_routes_match_exact_names_first_then_globs() -> None:
    routes = {"tasks.*": "glob", "tasks.add": "queue_add"}
    assert route_for("tasks.add", routes) == "queue_add"
    assert route_for("tasks.reduce", routes) == "glob"
    assert route_for("other", routes, default="celery") == "celery"
    assert celery_routes({"tasks.add": "q"}) == {"tasks.add": {"queue": "q"}}


def test_settings_refuse_an_invalid_worker_queue() -> None:
    with pytest.raises(ConfigError, match="invalid queue name 'bad queue'"):
        load_settings(worker_queues="default,bad queue")
    with pytest.raises(ConfigError, match="invalid queue name"):
        load_settings(task_routes={"tasks.add": "a b"})
