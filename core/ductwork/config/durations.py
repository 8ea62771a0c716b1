"""Durations in config: ``500ms``, ``30s``, ``15m``, ``2h``, ``1d`` or a number of seconds."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

__all__ = ["Duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: object) -> float:
    """Seconds in ``value``; raise ``ValueError`` saying what is accepted."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s', '15m', '2h'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            return float(match[1]) * _UNITS[match[2] or "s"]
    raise ValueError(
        f"{value!r} is not a duration: use seconds or a string like "
        "'500ms', '30s', '15m', '2h', '1d'"
    )


Duration = Annotated[float, BeforeValidator(parse_duration)]
