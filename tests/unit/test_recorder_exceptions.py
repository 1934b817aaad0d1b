"""Exception type and message from Celery's task-failed event."""

from __future__ import annotations

import pytest

from mainspring.recorder.exceptions import split_exception

TIME_LIMIT_TB = """Traceback (most recent call last):
  File "/x/billiard/pool.py", line 684, in on_hard_timeout
    raise TimeLimitExceeded(job._timeout)
billiard.exceptions.TimeLimitExceeded: TimeLimitExceeded(1,)
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ValueError('boom')", ("ValueError", "boom")),
        ("KeyError('x')", ("KeyError", "x")),
        ("RuntimeError('a', 2)", ("RuntimeError", "a, 2")),
        ("RuntimeError()", ("RuntimeError", "")),
        ("pkg.errors.Oops('multi\\nline')", ("Oops", "multi\nline")),
        ("Custom(<object at 0x1>)", ("Custom", "<object at 0x1>")),
        ("something odd", (None, "something odd")),
    ],
)
def test_repr_splits_into_type_and_message(text: str, expected: tuple[str | None, str]) -> None:
    assert split_exception(text) == expected


def test_wrapper_repr_is_replaced_by_the_tracebacks_last_line() -> None:
    assert split_exception("ExceptionWithTraceback()", TIME_LIMIT_TB) == (
        "TimeLimitExceeded",
        "1",
    )


def test_wrapper_without_a_traceback_keeps_what_it_has() -> None:
    assert split_exception("ExceptionWithTraceback()") == (
        "ExceptionWithTraceback",
        "ExceptionWithTraceback()",
    )
