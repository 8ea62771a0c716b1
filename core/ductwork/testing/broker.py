"""``BrokerSuite``: what every :class:`~ductwork.providers.Broker` must do."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import pytest

from ductwork.config.models import BrokerResource
from ductwork.errors import DuctworkError, ValidationError
from ductwork.processor._consume import consume
from ductwork.processor.events import Event
from ductwork.providers.broker import CLOSE_TIMEOUT, DEAD_GROUP, Broker, Delivery, Subscription

__all__ = ["BrokerSuite", "Restartable"]

WAIT = 15.0  # generous upper bound for one delivery on a slow CI machine; never slept
#: How soon a close or a cancel must end a subscription: the promised bound, with slack for CI.
ENDS_WITHIN = 2 * CLOSE_TIMEOUT + 1.0


async def _let_it_wait() -> None:
    """A few turns of the loop, so a task just started is inside its receive."""
    for _ in range(10):
        await asyncio.sleep(0)


async def _until(
    check: Callable[[], object], timeout: float, what: str, *, detail: Callable[[], str] = str
) -> None:
    """Wait until ``check()`` is true (polled: it watches other tasks and processes)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, (
            f"timed out after {timeout:g}s waiting for {what} {detail()}"
        )
        await asyncio.sleep(0.02)


class _Killable(Protocol):
    def kill(self) -> None: ...

    def restart(self) -> None: ...


@dataclass
class Restartable:
    """What the restart case needs: a provider on a server the test may ``kill -9`` and restart.

    Attributes:
        provider: an opened provider connected to ``server``.
        server: ``kill()`` it like a crash; ``restart()`` it on the same port and data (a
            :class:`ductwork.testing.servers.Server`).
        publish_bound: the documented longest time a publish takes to fail while it is down.
        settle: called before the kill, to bring a server just started to the state one that
            ran for a while is in (RabbitMQ: metadata saved to disk).
    """

    provider: Broker
    server: _Killable
    publish_bound: float
    settle: Callable[[], None] | None = None


class _Stuck:
    """A handler that signals it started, then waits until cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False

    async def __call__(self, event: Event) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def _take(sub: Subscription, timeout: float = WAIT) -> Delivery:
    delivery = await sub.receive(timeout=timeout)
    assert delivery is not None, "no delivery arrived"
    return delivery


class BrokerSuite:
    """Subclass with a ``provider`` fixture yielding an opened Broker."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]

    @pytest.fixture
    def topic(self) -> str:
        """A fresh topic per test."""
        return f"t{uuid.uuid4().hex[:12]}"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The restart case is collected only where there is a server to restart: a suite that
        # does not override ``restartable`` (an embedded broker, a variant tested elsewhere)
        # has no such test, rather than one that is always skipped.
        mro = cls.__mro__
        if not any("restartable" in vars(k) for k in mro[: mro.index(BrokerSuite)]):
            cls.test_subscription_rides_out_a_broker_restart = None  # type: ignore[assignment]

    @pytest.fixture
    def restartable(self) -> Restartable | None:
        """Override for a broker with a server: see :class:`Restartable`.

        Without an override the restart case is not collected.
        """
        return None

    async def test_published_message_arrives_with_key_and_headers(
        self, provider: Broker, topic: str
    ) -> None:
        async with await provider.subscribe(topic, "g1") as sub:
            await provider.publish(topic, b"hello", key="k1", headers={"h": "v"})
            delivery = await _take(sub)
            assert delivery.message.body == b"hello"
            assert delivery.message.key == "k1"
            assert delivery.message.headers.get("h") == "v"
            assert delivery.message.topic == topic
            assert delivery.attempt == 1
            await delivery.ack()
            assert await sub.receive(timeout=0.3) is None

    async def test_header_names_and_the_content_type_arrive_as_sent(
        self, provider: Broker, topic: str
    ) -> None:
        # Other services read them: names keep their case, the content type reaches the
        # consumer (RabbitMQ carries it as the AMQP property), and the key is no header.
        headers = {"Trace-Id": "t-1", "content-type": "application/json", "x-app": "a"}
        async with await provider.subscribe(topic, "g1") as sub:
            await provider.publish(topic, b"{}", key="k1", headers=headers)
            delivery = await _take(sub)
            assert dict(delivery.message.headers) == headers
            assert delivery.message.key == "k1"
            await delivery.ack()

    async def test_each_message_goes_to_one_member_of_a_group(
        self, provider: Broker, topic: str
    ) -> None:
        a = await provider.subscribe(topic, "workers")
        b = await provider.subscribe(topic, "workers")
        try:
            sent = {f"m{i}".encode() for i in range(10)}
            for body in sorted(sent):
                await provider.publish(topic, body)
            got: list[bytes] = []
            while len(got) < len(sent):
                for sub in (a, b):
                    delivery = await sub.receive(timeout=0.2)
                    if delivery is not None:
                        got.append(delivery.message.body)
                        await delivery.ack()
            assert sorted(got) == sorted(sent)
            assert await a.receive(timeout=0.3) is None
            assert await b.receive(timeout=0.3) is None
        finally:
            await a.close()
            await b.close()

    async def test_every_group_gets_every_message(self, provider: Broker, topic: str) -> None:
        async with (
            await provider.subscribe(topic, "one") as one,
            await provider.subscribe(topic, "two") as two,
        ):
            for i in range(3):
                await provider.publish(topic, f"m{i}".encode())
            for sub in (one, two):
                bodies = set()
                for _ in range(3):
                    delivery = await _take(sub)
                    bodies.add(delivery.message.body)
                    await delivery.ack()
                assert bodies == {b"m0", b"m1", b"m2"}

    async def test_nack_redelivers_with_a_higher_attempt(
        self, provider: Broker, topic: str
    ) -> None:
        async with await provider.subscribe(topic, "g") as sub:
            await provider.publish(topic, b"again")
            first = await _take(sub)
            assert first.attempt == 1
            await first.nack()
            second = await _take(sub)
            assert second.message.body == b"again"
            assert second.attempt == 2
            await second.ack()
            assert await sub.receive(timeout=0.3) is None

    async def test_unsettled_delivery_returns_to_the_group_when_its_consumer_leaves(
        self, provider: Broker, topic: str
    ) -> None:
        leaving = await provider.subscribe(topic, "g")
        staying = await provider.subscribe(topic, "g")
        try:
            await provider.publish(topic, b"in flight")
            delivery = await _take(leaving)
            assert not delivery.settled
            await leaving.close()
            again = await _take(staying)
            assert again.message.body == b"in flight"
            await again.ack()
        finally:
            await staying.close()

    async def test_unknown_subscribe_options_are_refused(
        self, provider: Broker, topic: str
    ) -> None:
        with pytest.raises(ValidationError, match="no_such_option"):
            await provider.subscribe(topic, "g", no_such_option=1)

    async def test_receive_times_out_with_none(self, provider: Broker, topic: str) -> None:
        async with await provider.subscribe(topic, "g") as sub:
            assert await sub.receive(timeout=0.2) is None

    async def test_same_key_arrives_in_order_where_ordering_is_declared(
        self, provider: Broker, topic: str
    ) -> None:
        async with await provider.subscribe(topic, "g") as sub:
            for i in range(20):
                await provider.publish(topic, str(i).encode(), key="same")
            got = []
            for _ in range(20):
                delivery = await _take(sub)
                got.append(int(delivery.message.body))
                await delivery.ack()
            if provider.supports("ordering"):
                assert got == list(range(20))
            else:  # no order promised, but nothing lost or duplicated
                assert sorted(got) == list(range(20))

    async def test_dead_letter_after_max_deliveries_or_keep_redelivering(
        self, provider: Broker, topic: str
    ) -> None:
        dead = await provider.subscribe(provider.dead_letter_topic(topic), DEAD_GROUP)
        try:
            async with await provider.subscribe(topic, "g", max_deliveries=2) as sub:
                await provider.publish(topic, b"poison", key="p")
                for attempt in (1, 2):
                    delivery = await _take(sub)
                    assert delivery.attempt == attempt
                    await delivery.nack()
                if provider.supports("dead_letter"):
                    assert await sub.receive(timeout=0.5) is None
                    letter = await _take(dead)
                    assert letter.message.body == b"poison"
                    assert letter.message.key == "p"
                    assert letter.message.headers.get("x-ductwork-dead-letter-from") == topic
                    await letter.ack()
                else:  # the caller dead-letters; the provider must not drop the message
                    again = await _take(sub)
                    assert again.message.body == b"poison"
                    assert again.attempt == 3
                    await again.ack()
                    assert await dead.receive(timeout=0.3) is None
        finally:
            await dead.close()

    async def test_delayed_nack_holds_the_message_back_where_declared(
        self, provider: Broker, topic: str
    ) -> None:
        async with await provider.subscribe(topic, "g") as sub:
            await provider.publish(topic, b"later")
            first = await _take(sub)
            await first.nack(delay=1.5)
            if provider.supports("delayed_nack"):
                assert await sub.receive(timeout=0.5) is None
            second = await _take(sub)
            assert second.message.body == b"later"
            assert second.attempt == 2
            await second.ack()

    async def test_concurrent_publishes_are_all_confirmed_and_delivered(
        self, provider: Broker, topic: str
    ) -> None:
        async with await provider.subscribe(topic, "g") as sub:
            await asyncio.gather(*(provider.publish(topic, f"{i}".encode()) for i in range(50)))
            got = set()
            for _ in range(50):
                delivery = await _take(sub)
                got.add(int(delivery.message.body))
                await delivery.ack()
            assert got == set(range(50))

    async def test_close_ends_a_pending_receive(self, provider: Broker, topic: str) -> None:
        sub = await provider.subscribe(topic, "g")
        receiving = asyncio.ensure_future(sub.receive())
        await _let_it_wait()
        await asyncio.wait_for(provider.close(), ENDS_WITHIN)
        assert await asyncio.wait_for(receiving, ENDS_WITHIN) is None
        assert sub.closed
        assert await sub.receive(timeout=0.1) is None
        await provider.close()  # closing again is harmless

    async def _subscribed(
        self, provider: Broker, topic: str, handler: _Stuck | None = None
    ) -> asyncio.Future[int]:
        ready = asyncio.Event()

        async def ignore(event: Event) -> None:
            raise AssertionError(f"no message expected, got {event.body!r}")

        task = asyncio.ensure_future(
            consume(provider, BrokerResource(), topic, "g", handler or ignore, ready=ready)
        )
        await asyncio.wait_for(ready.wait(), WAIT)
        if handler is not None:
            await provider.publish(topic, b"in flight")
            await asyncio.wait_for(handler.started.wait(), WAIT)
        else:
            await _let_it_wait()
        return task

    async def test_closing_the_provider_ends_subscribe_during_receive(
        self, provider: Broker, topic: str
    ) -> None:
        task = await self._subscribed(provider, topic)
        await asyncio.wait_for(provider.close(), ENDS_WITHIN)
        assert await asyncio.wait_for(task, ENDS_WITHIN) == 0

    async def test_closing_the_provider_ends_subscribe_during_a_handler(
        self, provider: Broker, topic: str
    ) -> None:
        handler = _Stuck()
        task = await self._subscribed(provider, topic, handler)
        await asyncio.wait_for(provider.close(), ENDS_WITHIN)
        assert await asyncio.wait_for(task, ENDS_WITHIN) == 0
        assert handler.cancelled

    async def test_cancel_during_receive_raises_and_leaves_the_group(
        self, provider: Broker, topic: str
    ) -> None:
        task = await self._subscribed(provider, topic)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, ENDS_WITHIN)

    async def test_cancel_during_a_handler_raises_and_returns_the_message(
        self, provider: Broker, topic: str
    ) -> None:
        handler = _Stuck()
        task = await self._subscribed(provider, topic, handler)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, ENDS_WITHIN)
        assert handler.cancelled
        async with await provider.subscribe(topic, "g") as sub:
            again = await _take(sub)
            assert again.message.body == b"in flight"
            await again.ack()

    async def test_subscription_rides_out_a_broker_restart(
        self, restartable: Restartable | None, topic: str
    ) -> None:
        assert restartable is not None, "restartable yields a Restartable where it is overridden"
        provider, server = restartable.provider, restartable.server
        received: Counter[int] = Counter()

        async def handler(event: Event) -> None:
            received[int(event.body)] += 1

        ready, stop, halt = asyncio.Event(), asyncio.Event(), asyncio.Event()
        resource = BrokerResource(retry_delay=0.05, reconnect_timeout=60)
        task = asyncio.ensure_future(
            consume(provider, resource, topic, "g", handler, stop=stop, ready=ready)
        )
        confirmed: set[int] = set()
        failed: list[float] = []  # how long each failed publish took
        errors: list[str] = []

        async def publisher() -> None:
            for i in itertools.count():
                if halt.is_set():
                    return
                started = time.monotonic()
                try:
                    await provider.publish(topic, str(i).encode())
                    confirmed.add(i)
                except DuctworkError as exc:
                    failed.append(time.monotonic() - started)
                    errors.append(str(exc))
                await asyncio.sleep(0.02)  # pacing, so a broker that is down is not hammered

        await asyncio.wait_for(ready.wait(), WAIT)
        publishing = asyncio.ensure_future(publisher())
        try:
            await _until(lambda: len(received) >= 20, WAIT, "20 messages before the kill")
            if restartable.settle is not None:
                await asyncio.to_thread(restartable.settle)
            await asyncio.to_thread(server.kill)
            await _until(lambda: failed, restartable.publish_bound + WAIT, "a failed publish")
            before = len(confirmed)
            await asyncio.to_thread(server.restart)
            await _until(
                lambda: len(confirmed) >= before + 20,
                2 * WAIT,
                "20 publishes after the restart",
                detail=lambda: (
                    f"(confirmed since: {len(confirmed) - before}; last errors: {errors[-3:]})"
                ),
            )
            halt.set()
            await publishing
            await _until(
                lambda: confirmed <= set(received),
                2 * WAIT,
                "every confirmed message",
                detail=lambda: (
                    f"(missing: {sorted(confirmed - set(received))[:50]}; "
                    f"confirmed {len(confirmed)}, received {len(received)}; subscription "
                    f"{'ended: ' + repr(task.exception()) if task.done() else 'runs'})"
                ),
            )
            assert not task.done(), "the subscription ended"
            assert max(failed) <= restartable.publish_bound + WAIT / 3
        finally:
            halt.set()
            stop.set()
            await asyncio.wait({publishing})
            await asyncio.wait({task}, timeout=ENDS_WITHIN)
        assert task.done(), "stop did not end the subscription"
        assert task.result() > 0  # returned, without an error, the count it handled
        twice = sum(1 for n in received.values() if n > 1)
        print(  # the figures docs/events.md quotes per broker (run with -s to see them)
            f"\nrestart of {type(provider).__name__}: confirmed {len(confirmed)}, "
            f"received {len(received)}, received twice {twice}, failed publishes {len(failed)}"
        )
