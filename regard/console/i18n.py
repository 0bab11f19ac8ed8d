"""The console's words: one message catalogue per language (messages/<lang>.json), so a translation
is a file. English is complete; a language file may leave a message out, and English is shown.

    words = catalogue("fr")
    words("search.no_candidate")            # a message
    words("collections.faces", count=3)     # with str.format fields
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

DEFAULT = "en"


@lru_cache(maxsize=None)
def _messages(lang: str) -> dict[str, str]:
    path = resources.files("regard.console") / "messages" / f"{lang}.json"
    return dict(json.loads(path.read_text(encoding="utf-8")))


def languages() -> list[str]:
    folder = resources.files("regard.console") / "messages"
    return sorted(item.name[:-5] for item in folder.iterdir() if item.name.endswith(".json"))


class Words:
    """The messages of one language, English where it has none."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in languages() else DEFAULT
        self._own = _messages(self.lang)
        self._english = _messages(DEFAULT)

    def __call__(self, message: str, /, **fields: Any) -> str:
        text = self._own.get(message) or self._english.get(message)
        if text is None:
            raise KeyError(f"no message {message!r} in the console's catalogue")
        return text.format(**fields) if fields else text


def choose(accept_language: str | None, wanted: str | None = None) -> str:
    """The language to show: `wanted` (the page's own choice) if there is a catalogue for it, else
    the first of the browser's Accept-Language that has one, else English."""
    available = languages()
    if wanted in available:
        return str(wanted)
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        for candidate in (tag, tag.split("-")[0]):
            if candidate in available:
                return candidate
    return DEFAULT


def catalogue(lang: str) -> Words:
    return Words(lang)
