"""One exception hierarchy: every error a user can cause says what was wrong and what to do."""


class MainspringError(Exception):
    """Base of every error Mainspring raises on purpose; its message is shown to the user."""


class ConfigError(MainspringError):
    """The configuration (environment, TOML file or command line) is wrong."""


class ValidationError(MainspringError):
    """A value given by a user is invalid; ``field`` names which one."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFoundError(MainspringError):
    """The object asked for does not exist."""


class ConflictError(MainspringError):
    """The change collides with the stored state (duplicate name, stale version)."""


class ServiceUnavailableError(MainspringError):
    """A service Mainspring needs (database, broker) cannot be reached."""
