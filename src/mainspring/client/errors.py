"""What the HTTP client raises: one class per kind of failure, each with the server's words."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """A request Mainspring refused or could not answer."""

    status: int | None = None

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.detail = detail


class ServerUnavailable(ClientError):
    """No answer (connection refused, timeout) or a 5xx."""


class AuthenticationFailed(ClientError):
    status = 401


class PermissionDenied(ClientError):
    status = 403


class NotFound(ClientError):
    status = 404


class Conflict(ClientError):
    """A stale version, a name already taken, an idempotency key reused for another task."""

    status = 409


class InvalidRequest(ClientError):
    """Bad input; ``field`` names the first offending field when the server said which."""

    status = 422

    @property
    def field(self) -> str | None:
        detail = self.detail
        if isinstance(detail, dict):
            return detail.get("field")
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            found = detail[0].get("field") or detail[0].get("loc")
            return ".".join(str(p) for p in found) if isinstance(found, list) else found
        return None


_BY_STATUS: dict[int, type[ClientError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    422: InvalidRequest,
}


def error_for(status: int, detail: Any) -> ClientError:
    """The exception for an HTTP error answer, its message made readable."""
    cls = _BY_STATUS.get(status, ServerUnavailable if status >= 500 else ClientError)
    error = cls(f"HTTP {status}: {_readable(detail)}", detail)
    error.status = status
    return error


def _readable(detail: Any) -> str:
    if isinstance(detail, dict) and "message" in detail:
        return f"{detail.get('field', '')}: {detail['message']}".lstrip(": ")
    if isinstance(detail, list):
        return "; ".join(_readable(item) for item in detail)
    return str(detail)
