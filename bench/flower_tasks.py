"""The Celery app ``api_submit.py`` gives Flower: the same task name as Mainspring's side
(``mainspring.echo``), registered, so that Flower's ``async-apply`` answers are real
submissions and not "Unknown task" errors. No worker runs it; the bench removes the queue."""

from __future__ import annotations

import os

from celery import Celery

QUEUE = "bench-flower"

app = Celery("bench_flower", broker=os.environ.get("BENCH_BROKER"))
app.conf.update(task_default_queue=QUEUE, task_send_sent_event=False)


@app.task(name="mainspring.echo")
def echo(message: str = "") -> str:
    return message
