"""Error types raised by Regard. Every error a caller can act on derives from RegardError."""

from __future__ import annotations


class RegardError(Exception):
    """Base class for errors that Regard raises on purpose."""


class ImageError(RegardError, ValueError):
    """The input could not be read as an image, or is outside the accepted limits."""


class ImageTooLargeError(ImageError):
    """The image is over a size limit (pixels or bytes); nothing was decoded past the check."""


class ModelError(RegardError):
    """A model file is missing, does not match its recorded sha256, or could not be loaded."""


class NoFaceError(RegardError):
    """An operation that needs a face found none in the image."""


class InvalidArgumentError(RegardError, ValueError):
    """An argument is malformed: a bad id, an empty purpose, a value out of range."""


class NotFoundError(RegardError, LookupError):
    """An unknown collection, person or face id."""


class AlreadyExistsError(RegardError):
    """A collection or person with that id exists already."""


class ConsentError(RegardError):
    """The person has no valid consent record for what was asked (enrollment)."""


class AuthError(RegardError):
    """A service request's credentials were missing, malformed, unknown, revoked or did not verify.

    `reason` is a short, fixed phrase for logs and metrics ("unknown key", "bad signature", ...); the
    service answers every AuthError with 401/403 and never says more to the client than it must."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason
