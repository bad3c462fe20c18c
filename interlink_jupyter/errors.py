"""Errors the REST API answers and problems the sidebar shows."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from interlink_core.models import JSON


class InputError(Exception):
    """A request the server cannot carry out: answered as ``{"error", "field"?}``."""

    def __init__(self, message: str, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status

    def as_json(self) -> JSON:
        """The answer's body."""
        body: JSON = {"error": self.message}
        if self.field:
            body["field"] = self.field
        return body


@dataclass(frozen=True)
class Problem:
    """Something the sidebar cannot show, why, and what to do about it."""

    source: str
    message: str
    hint: str

    def as_json(self) -> JSON:
        """As the REST API and the stream send it."""
        return asdict(self)
