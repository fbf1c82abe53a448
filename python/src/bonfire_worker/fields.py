"""Typed reads of JSON fields, with errors that name the field and what was found there."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .errors import FieldError

JsonObject = Mapping[str, Any]


def describe(value: object) -> str:
    """A short rendering of a JSON value and its JSON type, for error messages."""
    kind = {
        type(None): "null",
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text} ({kind})"


def get_object(data: object, key: str, where: str) -> JsonObject:
    value = _get(data, key, where)
    if not isinstance(value, Mapping):
        raise FieldError(f"{where}.{key}: expected an object, got {describe(value)}")
    return value


def get_list(data: object, key: str, where: str) -> list[Any]:
    value = _get(data, key, where)
    if not isinstance(value, list):
        raise FieldError(f"{where}.{key}: expected an array, got {describe(value)}")
    return value


def get_str(data: object, key: str, where: str) -> str:
    value = _get(data, key, where)
    if not isinstance(value, str):
        raise FieldError(f"{where}.{key}: expected a string, got {describe(value)}")
    return value


def get_int(data: object, key: str, where: str, minimum: int | None = None) -> int:
    return check_int(_get(data, key, where), f"{where}.{key}", minimum)


def check_int(value: object, where: str, minimum: int | None = None) -> int:
    # JSON has no separate integer type, but a bool is never a count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(f"{where}: expected an integer, got {describe(value)}")
    if minimum is not None and value < minimum:
        raise FieldError(f"{where}: must be at least {minimum}, got {value}")
    return value


def get_float(data: object, key: str, where: str, minimum: float | None = None) -> float:
    value = _get(data, key, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FieldError(f"{where}.{key}: expected a finite number, got {describe(value)}")
    if minimum is not None and value < minimum:
        raise FieldError(f"{where}.{key}: must be at least {minimum}, got {value}")
    return float(value)


def _get(data: object, key: str, where: str) -> object:
    if not isinstance(data, Mapping):
        raise FieldError(f"{where}: expected an object, got {describe(data)}")
    if key not in data:
        raise FieldError(f"{where}: missing field '{key}'")
    return data[key]
