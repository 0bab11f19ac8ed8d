"""Error types raised by Regard. Every error a caller can act on derives from RegardError."""

from __future__ import annotations


class RegardError(Exception):
    """Base class for errors that Regard raises on purpose."""


class ImageError(RegardError, ValueError):
    """The input could not be read as an image, or is outside the accepted limits."""


class ModelError(RegardError):
    """A model file is missing, does not match its recorded sha256, or could not be loaded."""


class NoFaceError(RegardError):
    """An operation that needs a face found none in the image."""
