"""Mainspring: a task scheduling platform built on Celery."""

__version__ = "0.1.0"
