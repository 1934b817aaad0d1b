"""Flower 2.x-compatible API under ``/api``: existing scripts keep working when Flower goes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api", tags=["flower"])
