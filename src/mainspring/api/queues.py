"""``/api/v1/queues``."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/queues", tags=["queues"])
