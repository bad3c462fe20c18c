"""Errors that carry an HTTP status and a message meant for the user."""

from __future__ import annotations


class InterLinkError(Exception):
    """An error with an HTTP status code and a message that says what to fix."""

    status_code: int = 500

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class BadRequest(InterLinkError):
    """The request is malformed or names something invalid (400)."""

    status_code = 400


class NotFound(InterLinkError):
    """The pod or container is unknown (404)."""

    status_code = 404


class Unauthorized(InterLinkError):
    """No credentials, or credentials that do not prove an identity (401)."""

    status_code = 401


class Forbidden(InterLinkError):
    """The caller is known but may not do this (403)."""

    status_code = 403


class BackendUnavailable(InterLinkError):
    """The plugin or batch system cannot be reached or refused the work (502/503)."""

    status_code = 503


class Unsupported(InterLinkError):
    """The backend cannot do this at all (501); retrying does not help."""

    status_code = 501


class InsufficientStorage(InterLinkError):
    """The backend's disk is full: nothing was submitted (507); the pod fails with this."""

    status_code = 507


def is_final(status_code: int) -> bool:
    """Whether an error answer is the remote's last word, which retrying cannot change: a 4xx
    (the request is wrong), a 501 (the remote cannot do this at all) or a 507 (its disk is
    full: the pod fails rather than wait for an operator)."""
    return status_code < 500 or status_code in (
        Unsupported.status_code,
        InsufficientStorage.status_code,
    )


class ConfigError(Exception):
    """Configuration that cannot be used; the message names the key and the fix."""
