"""Celery apps, Django settings and helpers that ``bench/beat_compare.py`` runs celery beat,
django-celery-beat and RedBeat with (bench-only: none of this is part of Mainspring)."""
