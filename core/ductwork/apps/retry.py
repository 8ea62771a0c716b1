"""Retry decisions for app calls: which outcomes retry, and how long to wait.

A status in the policy's ``on_status`` retries (by default 429, 500, 502, 503 and 504; other
4xx never do), as do refused or reset connections (``on_connection_error``) and, only when
asked, timeouts (``on_timeout``: a timed-out request may have been applied). The wait is
exponential backoff with full jitter — a uniform draw in ``[0, min(backoff_max, backoff *
2**(retry-1))]`` — unless the response carries ``Retry-After`` (seconds or an HTTP date), which
is honoured up to ``retry_after_max``.
"""

from __future__ import annotations

import datetime as dt
import random
from email.utils import parsedate_to_datetime

from ductwork.apps.models import RetryPolicy

__all__ = ["backoff_delay", "parse_retry_after", "retry_delay"]


def backoff_delay(policy: RetryPolicy, retry: int) -> float:
    """Full-jitter exponential delay before retry number ``retry`` (1-based)."""
    ceiling = min(policy.backoff_max, policy.backoff * (2 ** max(retry - 1, 0)))
    return random.uniform(0.0, ceiling)


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait, or ``None`` when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


def retry_delay(policy: RetryPolicy, retry: int, retry_after: str | None = None) -> float:
    """How long to wait before retry number ``retry``: Retry-After if given, else backoff."""
    asked = parse_retry_after(retry_after)
    if asked is not None:
        return min(asked, policy.retry_after_max)
    return backoff_delay(policy, retry)
