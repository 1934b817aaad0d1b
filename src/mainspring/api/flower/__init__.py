"""Flower 2.x-compatible API under ``/api``: existing scripts keep working when Flower goes.

Same paths, parameters and answer shapes as Flower (``docs/flower-api.md`` lists the
differences); authentication and roles are Mainspring's: HTTP Basic with a user's password,
bearer tokens or the console session; reads need viewer, writes operator.

Modules: ``tasks`` (submit, wait, result, revoke/abort, limits), ``listing`` (history from
the runs table), ``workers`` (list and remote control), ``queues`` (lengths); ``body`` reads
submissions, ``runs`` calls Mainspring's services, ``shapes`` renders Flower's dicts,
``history`` holds the queries, ``control`` the remote-control commands, ``deps`` the shared
dependencies (roles, arguments, error answers).
"""

from __future__ import annotations

from fastapi import APIRouter

from mainspring.api.flower import listing, queues, tasks, workers

router = APIRouter(prefix="/api", tags=["flower"])
router.include_router(tasks.router)
router.include_router(listing.router)
router.include_router(workers.router)
router.include_router(queues.router)
