"""Entry module for ``celery -A beat_apps.celery_main beat``: the Celery CLI wants a module-level
app, built here from the spec the bench wrote (``BENCH_SPEC``)."""

from __future__ import annotations

from beat_apps.apps import load_spec, make_app

_spec = load_spec()
if _spec["system"] == "dcb":
    import django

    django.setup()  # DatabaseScheduler imports Django models

app = make_app(_spec)
