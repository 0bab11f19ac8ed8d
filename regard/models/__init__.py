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
    from regard.models.recognizer import Recognizer

__all__ = ["ALL_MODELS", "ModelFile", "get_detector", "get_embedder", "get_recognizer"]

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


def get_embedder(model: str | None = None) -> Embedder:
    """The process-wide embedder of a recognition model: by name or id (name:sha256[:16]), or None
    for the built-in one. An operator's model is looked up, and its file checked (hashed again if
    it changed on disk), on every call: a replaced file is refused, never run from a stale session."""
    from regard.models.embedder import Embedder
    from regard.models.operator import resolve
    from regard.models.recognizer import BUILT_IN
    from regard.models.runtime import default_threads

    recognizer = BUILT_IN if model is None or model in (BUILT_IN.name, BUILT_IN.id) else resolve(model)
    key = "embedder" if recognizer.built_in else f"embedder:{recognizer.id}:{recognizer.path}"
    with _lock:
        if key not in _instances:
            _instances[key] = Embedder(recognizer, default_threads())
        return _instances[key]  # type: ignore[return-value]


def model_width(model: str | None) -> int:
    """The width of a model's vectors (name or id; None: the built-in model's, 128)."""
    from regard.models.recognizer import BUILT_IN

    if model is None or model in (BUILT_IN.name, BUILT_IN.id):
        return BUILT_IN.width
    return get_recognizer(model).width


def get_recognizer(model: str | None = None) -> Recognizer:
    """The description of a recognition model (see `get_embedder`), its file checked."""
    from regard.models.operator import resolve

    return resolve(model)
