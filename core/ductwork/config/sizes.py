"""Sizes in config: ``512``, ``256KB``, ``1MB``, ``2GB`` (``KiB``/``MiB``/``GiB`` too).

``KB``, ``MB`` and ``GB`` are binary here (1 KB = 1024 bytes), as brokers count their limits
(NATS' ``max_payload`` of 1 MB is 1048576 bytes); ``KiB``/``MiB``/``GiB`` are the same units.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

__all__ = ["Size", "parse_size"]

_UNITS = {"": 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*$", re.IGNORECASE)


def parse_size(value: object) -> int:
    """Bytes in ``value``; raise ``ValueError`` saying what is accepted."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            unit = (match[2] or "").lower().replace("i", "")
            return int(float(match[1]) * _UNITS[unit])
    raise ValueError(
        f"{value!r} is not a size: use a number of bytes or a string like '256KB', '1MB', '2GB'"
    )


Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*([kKmMgG][iI]?[bB]|[bB])?\s*$"},
            ]
        }
    ),
]
