"""Group commit for task submissions: one transaction and one broker channel per batch.

Under load most of a submission's cost is fixed per transaction and per broker checkout
(BEGIN/COMMIT round trips, a pooled connection, a producer), not per run. A web process
therefore hands plain submissions (``services.tasks.is_plain``: sent now, to one queue, no
idempotency key) to one thread that takes whatever is waiting (up to ``MAX_BATCH``),
inserts those runs in one transaction, publishes them on one producer and only then answers
each request. A request is never answered before its run is committed, so an accepted
task always has its run row, and a publishing failure still marks that one run FAILURE
(``services.publishing.publish_run``). A batch whose insert fails is retried one run per
transaction, so one bad run fails only its own request.

The thread starts on first use and ends after ``IDLE_S`` without work, so an app that is
dropped without a shutdown (tests) does not leave it behind.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from mainspring.context import AppContext
from mainspring.db.models import Run
from mainspring.services.publishing import mark_unpublished, publish_batch, publish_run
from mainspring.services.tasks import Submission, Submitted, is_plain, plain_run, submit

log = logging.getLogger(__name__)

MAX_BATCH = 256
IDLE_S = 2.0


@dataclass
class _Item:
    sub: Submission
    app: Any
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Submitted]


class Submitter:
    """Stores and publishes plain submissions in batches for one web app (see module doc)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    async def submit(self, app: Any, sub: Submission) -> Submitted:
        """Store and publish ``sub`` (a plain submission) with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        item = _Item(sub, app, loop, loop.create_future())
        with self._lock:
            if self._closed:
                raise RuntimeError("the web app is shutting down")
            self._queue.put(item)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="mainspring-submitter", daemon=True
                )
                self._thread.start()
        return await item.future

    def close(self, timeout: float = 30.0) -> None:
        """Finish what was handed over, then stop the thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout)

    def _work(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=IDLE_S)
            except queue.Empty:
                with self._lock:  # submit() puts under this lock: nothing can slip in
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            items = [item for item in batch if item is not None]
            try:
                self._handle(items)
            except BaseException as exc:  # never leave a request waiting
                log.exception("submission batch failed")
                for item in items:
                    _settle(item, None, exc)
            if None in batch:
                with self._lock:
                    self._thread = None
                return

    def _handle(self, items: list[_Item]) -> None:
        prepared: list[tuple[_Item, Run]] = []
        for item in items:
            try:
                prepared.append((item, plain_run(self.ctx, item.sub)))
            except Exception as exc:
                _settle(item, None, exc)
        by_app: dict[int, list[tuple[_Item, Run]]] = {}
        for item, run in self._store(prepared):
            by_app.setdefault(id(item.app), []).append((item, run))
        for group in by_app.values():  # one app in practice (the web app's)
            self._publish(group)

    def _store(self, prepared: list[tuple[_Item, Run]]) -> list[tuple[_Item, Run]]:
        """Insert the runs in one transaction; if that fails, one transaction each (a
        rolled-back insert leaves its objects transient, so they can be added again)."""
        if not prepared:
            return []
        try:
            with self.ctx.session() as session:
                session.add_all([run for _item, run in prepared])
            return prepared
        except Exception as exc:
            if len(prepared) == 1:
                _settle(prepared[0][0], None, exc)
                return []
            log.warning("batch insert failed; storing its runs one by one", exc_info=True)
        stored = []
        for item, run in prepared:
            try:
                with self.ctx.session() as session:
                    session.add(run)
                stored.append((item, run))
            except Exception as exc:
                _settle(item, None, exc)
        return stored

    def _publish(self, stored: list[tuple[_Item, Run]]) -> None:
        """Publish on one producer, pipelined where the transport can (one round trip for
        the batch on Redis). If the producer or the flush fails, none of the batch counts
        as sent: its runs are marked FAILURE and their requests answered 503."""
        app = stored[0][0].app
        sent: list[tuple[_Item, Run]] = []
        try:
            with app.producer_or_acquire() as producer, publish_batch(producer):
                for item, run in stored:
                    try:
                        publish_run(self.ctx, app, run, item.sub.options, producer=producer)
                    except Exception as exc:  # this run only (already marked FAILURE)
                        _settle(item, None, exc)
                        continue
                    sent.append((item, run))
        except Exception as exc:
            error = mark_unpublished(self.ctx, [run.id for _item, run in stored], exc)
            for item, _run in stored:
                _settle(item, None, error)
            return
        for item, run in sent:
            _settle(item, Submitted(run), None)


def _settle(item: _Item, result: Submitted | None, exc: BaseException | None) -> None:
    def done() -> None:
        if item.future.done():  # the client went away
            return
        if exc is not None:
            item.future.set_exception(exc)
        else:
            item.future.set_result(result)  # type: ignore[arg-type]

    with suppress(RuntimeError):  # a closed loop: nobody is waiting any more
        item.loop.call_soon_threadsafe(done)


async def submit_from_request(
    request: Request, ctx: AppContext, app: Any, sub: Submission
) -> Submitted:
    """``services.tasks.submit`` for a web request: plain submissions go through the app's
    batching ``Submitter``, the rest (idempotency keys, broadcasts, delayed runs) run on
    their own in the thread pool."""
    submitter: Submitter | None = getattr(request.app.state, "submitter", None)
    if submitter is not None and is_plain(sub):
        return await submitter.submit(app, sub)
    return await run_in_threadpool(submit, ctx, app, sub)
