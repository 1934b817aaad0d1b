"""Django settings for django-celery-beat's ``DatabaseScheduler`` in the bench: PostgreSQL on
loopback, the database named by ``BENCH_DCB_DB`` (a throwaway one the bench creates)."""

import os

SECRET_KEY = "bench-only-not-secret"  # noqa: S105
INSTALLED_APPS = ["django_celery_beat"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("BENCH_DCB_DB", "postgres"),
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
    }
}
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
