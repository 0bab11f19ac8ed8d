"""Parsing request JSON so that no body can make the service fail: every problem is an
InvalidArgumentError that says what is wrong, never a RecursionError, an OverflowError, a 4,300-digit
integer's ValueError or a lone surrogate that breaks the audit log's UTF-8 later.
"""

from __future__ import annotations

import json
import math
from typing import Any

from regard.errors import InvalidArgumentError
from regard.store.base import check_unicode

MAX_DEPTH = 32
"""Objects and arrays nested deeper than this are refused (Regard's own bodies nest 3 deep)."""

MAX_INT_DIGITS = 30


class BadJson(InvalidArgumentError):
    """A body that is not JSON Regard accepts; `syntax` when it is not JSON at all."""

    def __init__(self, message: str, *, syntax: bool = False) -> None:
        super().__init__(message)
        self.syntax = syntax


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise BadJson(f"a number in the body has more than {MAX_INT_DIGITS} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadJson(f"the number {text[:40]} in the body is too large")
    return value


def _constant(name: str) -> float:
    raise BadJson(f"{name} is not a number JSON allows")


def parse(data: bytes | str) -> Any:
    """The value of a JSON document, after the checks above (and UTF-8 text throughout)."""
    try:
        value = json.loads(data, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except BadJson:
        raise
    except RecursionError:
        raise BadJson(f"the body nests objects or arrays more than {MAX_DEPTH} deep") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadJson(f"the body is not valid JSON: {exc}", syntax=True) from None
    except ValueError as exc:
        raise BadJson(f"the body is not valid JSON: {exc}") from None
    _check(value)
    return value


def _check(value: Any) -> None:
    """Depth and text checks, without recursion (the value may be close to the parser's limit)."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "the body")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, str):
            _text(item, where)
        elif isinstance(item, (dict, list)):
            if depth >= MAX_DEPTH:
                raise BadJson(f"the body nests objects or arrays more than {MAX_DEPTH} deep")
            if isinstance(item, dict):
                for key, child in item.items():
                    _text(key, f"a key of {where}")
                    stack.append((child, depth + 1, repr(key)[:60]))
            else:
                stack.extend((child, depth + 1, where) for child in item)


def _text(text: str, where: str) -> None:
    try:
        check_unicode(text, where)
    except InvalidArgumentError as exc:
        raise BadJson(str(exc)) from None
