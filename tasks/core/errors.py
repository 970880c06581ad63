"""The one exception hierarchy of the ``tasks`` package.

Each exception's docstring is its default message (the Procrastinate habit).
Interfaces map them: the CLI to a message and an exit code, the web to an HTTP
status and ``{"error": {"code", "message", "field"}}``.
"""

from __future__ import annotations


class ReachError(Exception):
    """Something went wrong in Reach D. Box."""

    code = "error"

    def __init__(
        self,
        message: str | None = None,
        *,
        field: str | None = None,
        details: list[dict[str, str]] | None = None,
    ):
        self.message = message or (self.__doc__ or "").strip()
        self.field = field
        #: Every problem found, when there was more than one ({"field", "message"} each).
        self.details = details or []
        super().__init__(self.message)

    def as_dict(self) -> dict[str, object]:
        """Return the error as the API's error object."""
        data: dict[str, object] = {"code": self.code, "message": self.message, "field": self.field}
        if len(self.details) > 1:
            data["details"] = self.details
        return data


class ConfigError(ReachError):
    """A setting is invalid."""

    code = "invalid_setting"

    def __init__(self, setting: str, reason: str):
        super().__init__(f"{setting}: {reason}", field=setting)


class ValidationError(ReachError):
    """The request is invalid."""

    code = "invalid"


class NotFound(ReachError):
    """No such email."""

    code = "not_found"


class Forbidden(ReachError):
    """Your role in this organization does not allow this."""

    code = "forbidden"


class Conflict(ReachError):
    """The request conflicts with the current state."""

    code = "conflict"


class TooLate(Conflict):
    """The email is already being sent or has been sent."""

    code = "too_late"
