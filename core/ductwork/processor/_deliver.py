"""The one retry loop every notifier's send goes through.

``dw.notifications.send`` (and so the dispatched ``notifications.send`` job) hands the built
notification to :func:`deliver`, which calls ``Notifier.send`` until it succeeds, fails in a way
no retry can fix, or the resource's ``retries`` are spent. What is retried is the notifier
contract (:func:`ductwork.providers.notifier.retryable`): :class:`ConnectionFailedError`
(refused, reset, unreachable, timed out) and :class:`HTTPStatusError` 429 or 5xx; never another
4xx, a :class:`ValidationError` or another error. The wait is exponential backoff with full
jitter (:func:`ductwork.apps.retry.retry_delay`, the apps' own), or the ``Retry-After`` the
error carries, up to ``cap``.

``retries`` on a notifier resource has the shape of dispatch retries (``retries: 3`` or
``{max, backoff, cap, non_retryable}``): the one ``retries`` already means in config (feature
steps and features). Default: ``{max: 3, backoff: 0.5s, cap: 10s}``.

Each attempt is reported to an optional ``on_attempt`` hook (an async callable taking an
:class:`Attempt`): the seam the delivery log records through, given per call to
:func:`deliver` (so a per-send log entry can be closed over), e.g.::

    async def record(a: Attempt) -> None:
        await entry.attempt(receipt=a.receipt, error=a.exception, retrying=a.outcome == "retrying")

A hook that raises is logged and does not change the delivery's outcome.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ductwork._redact import get_logger, redact
from ductwork.apps.models import RetryPolicy as Backoff
from ductwork.apps.retry import retry_delay
from ductwork.engine.spec import RetryPolicy, parse_retries
from ductwork.errors import DuctworkError, HTTPStatusError
from ductwork.providers.notifier import Notification, Receipt, retryable

__all__ = ["DEFAULT_RETRIES", "Attempt", "OnAttempt", "Outcome", "Send", "deliver", "send_policy"]

_log = get_logger("ductwork.notifications")

#: A notifier's retries when its resource sets none.
DEFAULT_RETRIES: Mapping[str, Any] = {"max": 3, "backoff": 0.5, "cap": 10.0}

Outcome = Literal["delivered", "retrying", "failed"]


@dataclass(frozen=True)
class Attempt:
    """One call of a notifier's ``send``, as the ``on_attempt`` hook sees it.

    Attributes:
        notifier: the notifier resource's tag.
        env: the env the provider serves.
        notification: what was sent (its ``message_id()`` is the same on every attempt).
        number: 1 for the first attempt, 2 for the first retry, …
        started: when the attempt began (UTC).
        ended: when it ended (UTC).
        outcome: ``delivered``; ``retrying`` (failed, another attempt follows after
            ``retry_in`` seconds); or ``failed`` (the error reaches the caller).
        error: ``"<ErrorClass>: <message>"`` with secrets redacted, or ``None``.
        status: the HTTP status of an :class:`HTTPStatusError`, else ``None``.
        receipt: the provider's receipt when delivered.
        retry_in: seconds until the next attempt when ``retrying``.
        exception: the error itself (for a log that words it its own way), or ``None``.
    """

    notifier: str
    env: str
    notification: Notification
    number: int
    started: dt.datetime
    ended: dt.datetime
    outcome: Outcome
    error: str | None = None
    status: int | None = None
    receipt: Receipt | None = None
    retry_in: float | None = None
    exception: DuctworkError | None = None


#: The per-attempt hook: ``async def on_attempt(attempt: Attempt) -> None``.
OnAttempt = Callable[[Attempt], Awaitable[None]]
#: One try: a notifier's ``send`` (``provider.send``, or a lambda adding arguments).
Send = Callable[[Notification], Awaitable[Receipt]]


def send_policy(retries: int | Mapping[str, Any] | None) -> RetryPolicy:
    """A notifier resource's ``retries`` setting, parsed (``None``: :data:`DEFAULT_RETRIES`).

    Raises:
        ValidationError: the setting is not a count or a ``{max, backoff, cap, …}`` mapping.
    """
    return parse_retries(DEFAULT_RETRIES if retries is None else retries)


def _backoff(policy: RetryPolicy) -> Backoff:
    return Backoff(
        retries=policy.max_retries,
        backoff=policy.backoff,
        backoff_max=policy.cap,
        retry_after_max=policy.cap,
    )


async def deliver(
    send: Send,
    notification: Notification,
    policy: RetryPolicy,
    *,
    notifier: str,
    env: str,
    on_attempt: OnAttempt | None = None,
) -> Receipt:
    """``await send(notification)`` until delivered, retrying as ``policy`` and the contract say.

    ``send`` is the provider's ``send`` (bound, or a lambda passing more arguments); ``notifier``
    and ``env`` name where it goes, for the :class:`Attempt` records.

    Raises:
        DuctworkError: the last attempt's error (an :class:`HTTPStatusError`'s ``attempts``
            says how many were made).
    """
    backoff = _backoff(policy)
    number = 0
    while True:
        number += 1
        started = dt.datetime.now(dt.UTC)
        try:
            receipt = await send(notification)
        except DuctworkError as exc:
            again = (
                number <= policy.max_retries
                and retryable(exc)
                and type(exc).__name__ not in policy.non_retryable
            )
            wait = (
                retry_delay(backoff, number, getattr(exc, "retry_after", None)) if again else None
            )
            if isinstance(exc, HTTPStatusError):
                exc.attempts = number
            attempt = Attempt(
                notifier=notifier,
                env=env,
                notification=notification,
                number=number,
                started=started,
                ended=dt.datetime.now(dt.UTC),
                outcome="retrying" if again else "failed",
                error=redact(f"{type(exc).__name__}: {exc}"),
                status=exc.status if isinstance(exc, HTTPStatusError) else None,
                retry_in=wait,
                exception=exc,
            )
            await _report(on_attempt, attempt)
            if wait is None:
                raise
            _log.info(
                "notifier=%s env=%s attempt=%d retry_in=%.3f error=%s",
                notifier,
                env,
                number,
                wait,
                type(exc).__name__,
            )
            await asyncio.sleep(wait)
            continue
        ended = dt.datetime.now(dt.UTC)
        await _report(
            on_attempt,
            Attempt(
                notifier, env, notification, number, started, ended, "delivered", receipt=receipt
            ),
        )
        return receipt


async def _report(hook: OnAttempt | None, attempt: Attempt) -> None:
    if hook is None:
        return
    try:
        await hook(attempt)
    except Exception as exc:  # the log must not turn a delivery into a failure (or a resend)
        _log.warning(
            "on_attempt hook failed for notifier=%s attempt=%d: %s: %s",
            attempt.notifier,
            attempt.number,
            type(exc).__name__,
            exc,
        )
