"""Compact JSON, the form the run store and the wire formats keep.

One encoder made once: ``json.dumps(value, separators=…)`` builds a new ``JSONEncoder`` on every
call, which a dispatch would pay twice (the message, then the run's input).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["compact"]

#: ``value`` as JSON without spaces; raises what ``json.dumps`` raises
compact: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":")).encode
