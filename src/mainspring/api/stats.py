"""``/api/v1/stats``."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/stats", tags=["stats"])
