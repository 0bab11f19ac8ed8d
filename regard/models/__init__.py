"""Model files and the process-wide, lazily loaded model instances.

Nothing is loaded at import time; each model is built on first use and then reused.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from regard.models.registry import ALL_MODELS, ModelFile

if TYPE_CHECKING:
    from regard.models.detector import CenterFace
    from regard.models.embedder import Embedder

__all__ = ["ALL_MODELS", "ModelFile", "get_detector", "get_embedder"]

_lock = threading.Lock()
_instances: dict[str, object] = {}


def get_detector() -> CenterFace:
    """The process-wide face detector."""
    with _lock:
        if "detector" not in _instances:
            from regard.models.detector import CenterFace
            from regard.models.runtime import default_threads

            _instances["detector"] = CenterFace(default_threads())
        return _instances["detector"]  # type: ignore[return-value]


def get_embedder() -> Embedder:
    """The process-wide face embedder."""
    with _lock:
        if "embedder" not in _instances:
            from regard.models.embedder import Embedder
            from regard.models.runtime import default_threads

            _instances["embedder"] = Embedder(default_threads())
        return _instances["embedder"]  # type: ignore[return-value]
