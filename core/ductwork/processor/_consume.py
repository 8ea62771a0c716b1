"""The one subscribe loop behind ``dw.events.subscribe``: receive, handle, settle, reconnect.

Every provider (and every outside plugin) gets the same behaviour from here:

* **Closing.** When the subscription is closed under the loop (the client or the provider
  closes), the loop ends and returns the count handled. A handler still running is cancelled;
  its message goes back to the group with the subscription's close, never acked.
* **Cancelling.** Cancellation is never swallowed: the in-flight message is nacked, the
  subscription closed (within ``CLOSE_TIMEOUT``), and ``CancelledError`` raised.
* **Outages.** A :class:`ConnectionFailedError` while receiving, acking or nacking closes the
  subscription as well as it can and joins the group again, with capped, jittered backoff, until
  it works or ``reconnect_timeout`` passed. One WARNING when the connection is lost, one INFO when
  it is back. A message whose settlement was lost with the connection comes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ductwork._redact import get_logger
from ductwork.errors import ConnectionFailedError
from ductwork.providers.broker import (
    CLOSE_TIMEOUT,
    DEAD_GROUP,
    Broker,
    Delivery,
    Subscription,
    close_quietly,
    dead_letter_marks,
)

if TYPE_CHECKING:
    from ductwork.config.models import BrokerResource
    from ductwork.processor._offload import Offload, Reference
    from ductwork.processor.events import Event

__all__ = ["consume"]

log = get_logger("ductwork.events")

#: Longest single ``receive`` call: how soon a loop notices a close its provider did not signal.
POLL = 0.5
RECONNECT_FIRST = 0.1  # first reconnect backoff (s); doubles, with full jitter
RECONNECT_MAX = 5.0  # cap on one reconnect backoff (s)


async def consume(
    provider: Broker,
    resource: BrokerResource,
    topic: str,
    group: str,
    handler: Callable[[Event], Awaitable[Any]],
    *,
    stop: asyncio.Event | None = None,
    limit: int | None = None,
    ready: asyncio.Event | None = None,
    offload: Offload | None = None,
) -> int:
    """Run ``handler`` on ``topic``'s deliveries to ``group``; return how many were handled.

    With ``offload``, a reference message's body is restored before the handler runs (a body
    that cannot be read fails the delivery like a handler error: retried, then dead-lettered),
    the group's ack is recorded for it, and (when the resource sets ``offload``) a pruner
    removes retained bodies past retention while the loop runs.
    """
    loop = _Loop(provider, resource, topic, group, handler, stop)
    loop.offload = offload
    sub = await loop.join()
    if ready is not None:
        ready.set()
    handled = 0
    pruner = None
    if offload is not None and offload.settings is not None:
        pruner = asyncio.ensure_future(offload.pruning())
    try:
        while not loop.stopped() and (limit is None or handled < limit):
            _raise_if_cancelled()
            if sub.closed:
                break  # closed under us: the client or the provider is closing
            try:
                delivery = await sub.receive(timeout=POLL)
                if delivery is None:
                    continue
                done = await loop.handle(sub, delivery)
            except ConnectionFailedError as exc:
                _raise_if_cancelled()  # a client may turn our cancellation into a timeout
                if sub.closed or provider.closing:
                    break
                sub = await loop.rejoin(sub, exc)
                continue
            if done is None:
                break
            handled += int(done)
    finally:
        if pruner is not None:
            pruner.cancel()
        loop.unwatch()
        await close_quietly(sub)
    return handled


async def _settle_quietly(delivery: Delivery) -> None:
    # a nack on the way out: if it fails, the broker redelivers after its own timeout
    with contextlib.suppress(Exception):
        await asyncio.wait_for(delivery.nack(), CLOSE_TIMEOUT)


def _raise_if_cancelled() -> None:
    """Raise ``CancelledError`` if this task was cancelled and something swallowed it.

    Client libraries convert a cancellation that races their own timeout into a timeout error
    (or an empty result); the task's pending cancel count still says it was asked to stop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class _Loop:
    def __init__(
        self,
        provider: Broker,
        resource: BrokerResource,
        topic: str,
        group: str,
        handler: Callable[[Event], Awaitable[Any]],
        stop: asyncio.Event | None,
    ) -> None:
        self.provider = provider
        self.resource = resource
        self.topic = topic
        self.group = group
        self.handler = handler
        self.stop = stop
        self._watched: Subscription | None = None
        self._watch: asyncio.Future[None] | None = None
        self.offload: Offload | None = None

    def closing(self, sub: Subscription) -> asyncio.Future[None]:
        """Done once ``sub`` closes (one waiter per subscription, not one per message)."""
        if self._watched is not sub or self._watch is None:
            self.unwatch()
            self._watched, self._watch = sub, asyncio.ensure_future(sub.wait_closed())
        return self._watch

    def unwatch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        self._watched = self._watch = None

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    async def join(self) -> Subscription:
        provider = self.provider
        # Make sure dead letters are kept even before anyone reads them.
        dead = await provider.subscribe(provider.dead_letter_topic(self.topic), DEAD_GROUP)
        await dead.close()
        return await provider.subscribe(
            self.topic, self.group, max_deliveries=self.resource.max_deliveries
        )

    async def rejoin(self, old: Subscription, cause: ConnectionFailedError) -> Subscription:
        """Join the group again after ``cause``; raise once ``reconnect_timeout`` passed."""
        provider, ctx = self.provider, self.provider.context
        why = getattr(cause, "message", str(cause))  # without the context repeated
        log.warning(
            "broker connection lost: resource=%s env=%s provider=%s endpoint=%s: %s",
            ctx.resource,
            ctx.env,
            ctx.provider,
            provider.endpoint,
            why,
        )
        await close_quietly(old)
        started = time.monotonic()
        budget = self.resource.reconnect_timeout
        attempt = 0
        while True:
            attempt += 1
            _raise_if_cancelled()
            delay = random.uniform(0, min(RECONNECT_MAX, RECONNECT_FIRST * 2**attempt))
            elapsed = time.monotonic() - started
            if budget is not None and elapsed + delay > budget:
                raise provider.error(
                    f"subscription to {self.topic!r} (group {self.group!r}) could not reconnect "
                    f"within reconnect_timeout ({budget:g}s); the connection was lost with: "
                    f"{why}",
                    ConnectionFailedError,
                ) from cause
            if await self._pause(delay):
                return old  # stopped or closing: the caller's loop ends on the closed old one
            try:
                await provider.ping()  # a join may need no round trip: make sure it is back
                sub = await self.join()
            except ConnectionFailedError as exc:
                log.debug("rejoining %s failed: %s", self.topic, exc)
                continue
            log.info(
                "broker connection back after %.1fs: resource=%s env=%s provider=%s endpoint=%s",
                time.monotonic() - started,
                ctx.resource,
                ctx.env,
                ctx.provider,
                provider.endpoint,
            )
            return sub

    async def _pause(self, delay: float) -> bool:
        """Wait ``delay`` s; ``True`` at once if the loop was stopped or its provider closed."""
        until = time.monotonic() + delay
        while not (self.stopped() or self.provider.closing):
            left = until - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(left, 0.1))
        return True

    async def handle(self, sub: Subscription, delivery: Delivery) -> bool | None:
        """Run the handler on one delivery: ``True`` once done with, ``None`` if sub closed."""
        closing = self.closing(sub)
        claim: list[Reference] = []  # the restored body's reference, once restored
        task = asyncio.ensure_future(self._run(delivery, claim))
        try:
            await asyncio.wait({task, closing}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.wait({task}, timeout=CLOSE_TIMEOUT)
            await _settle_quietly(delivery)
            raise
        if not task.done():  # closed under the handler: its close returns the message
            task.cancel()
            await asyncio.wait({task}, timeout=CLOSE_TIMEOUT)
            return None
        if task.cancelled():  # the handler was cancelled from inside
            await _settle_quietly(delivery)
            raise asyncio.CancelledError
        exc = task.exception()
        if exc is None:
            await delivery.ack()
            if claim:
                await self._release(claim[0])
            return True
        if not isinstance(exc, Exception):
            await _settle_quietly(delivery)
            raise exc
        return await self._failed(sub, delivery, exc)

    async def _run(self, delivery: Delivery, claim: list[Reference]) -> None:
        """Restore an offloaded body (noting its reference in ``claim``), then run the handler."""
        from ductwork.processor._offload import offloaded
        from ductwork.processor.events import Event

        msg = delivery.message
        body, headers = msg.body, msg.headers
        if self.offload is not None and offloaded(headers):
            body, headers, ref = await self.offload.restore(msg)
            claim.append(ref)
        event = Event(msg.topic, body, msg.key, dict(headers), msg.id, delivery.attempt)
        del body
        await self.handler(event)

    async def _release(self, ref: Reference) -> None:
        """The group acked an offloaded message: record it (a failure only keeps the body)."""
        assert self.offload is not None
        try:
            await self.offload.acked(ref, self.group)
        except Exception as exc:
            log.warning("could not record the ack of offloaded body %s: %s", ref.key, exc)

    async def _failed(self, sub: Subscription, delivery: Delivery, exc: Exception) -> bool | None:
        resource, provider, msg = self.resource, self.provider, delivery.message
        error = f"{type(exc).__name__}: {exc}"
        if delivery.attempt >= resource.max_deliveries:
            log.warning(
                "dead-lettering %s after %d deliveries: %s", msg.topic, delivery.attempt, error
            )
            headers = {**msg.headers, **dead_letter_marks(msg.topic, delivery.attempt, error)}
            if self.offload is not None:  # its stored body stays: the dead letter owes the ack
                headers.update(self.offload.dead_marks(msg, self.group))
            await provider.publish(
                provider.dead_letter_topic(msg.topic), msg.body, key=msg.key, headers=headers
            )
            await delivery.ack()
            return True
        backoff = min(resource.retry_delay_max, resource.retry_delay * 2 ** (delivery.attempt - 1))
        delay = random.uniform(0, backoff)  # full jitter
        log.info(
            "handler failed on %s (delivery %d), retrying in %.2fs: %s",
            msg.topic,
            delivery.attempt,
            delay,
            error,
        )
        if provider.supports("delayed_nack"):
            await delivery.nack(delay=delay)
            return False
        # the broker cannot hold it back: this consumer waits instead (a close ends the wait)
        await asyncio.wait({self.closing(sub)}, timeout=delay)
        if sub.closed:
            return None
        await delivery.nack()
        return False
