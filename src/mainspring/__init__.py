"""Mainspring: a task scheduling platform built on Celery."""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``mainspring.Client`` without importing the client (and httpx) for every role."""
    if name == "Client":
        from mainspring.client.http import Client

        return Client
    raise AttributeError(f"module 'mainspring' has no attribute {name!r}")
