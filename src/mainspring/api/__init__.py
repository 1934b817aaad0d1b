"""The HTTP layer: the JSON API under ``/api/v1``, and the app factory that adds the console."""
