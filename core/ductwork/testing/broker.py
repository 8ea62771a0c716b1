"""``BrokerSuite``: what every :class:`~ductwork.providers.Broker` must do."""

from __future__ import annotations

import asyncio
import uuid
from typing import ClassVar

import pytest

from ductwork.errors import ValidationError
from ductwork.providers.broker import DEAD_GROUP, Broker, Delivery, Subscription

__all__ = ["BrokerSuite"]

WAIT = 15.0  # generous upper bound for one delivery on a slow CI machine; never slept


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
