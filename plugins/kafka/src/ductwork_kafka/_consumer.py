"""The consumer side: one Kafka consumer per subscription, driven by its own thread.

The thread owns the :class:`~confluent_kafka.Consumer` (every call on it happens there):
it polls, hands messages to the event loop in batches, and applies acks sent back through a
queue. Offsets are committed only up to the first unacked message of each partition, so a
message is never committed before it was handled. A nack redelivers from memory (its offset
stays uncommitted); leaving the group without acking leaves the offsets where they were, so
the group's next owner of the partition gets the messages again.

New groups: when a partition has no committed offset for the group, the first owner resolves
``auto_offset_reset`` (the log end for ``latest``) and commits that position at once. Without
this anchor a message fetched but never acked would be skipped by the next owner, which would
resolve ``latest`` again after it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from ductwork.providers.broker import Delivery, Message, Subscription, get_until

__all__ = ["KafkaSubscription"]

log = logging.getLogger("ductwork.kafka")

POLL_TIMEOUT = 0.05  # seconds; also how late an ack may reach the commit logic
FETCH_BATCH = 500
CALL_TIMEOUT = 10.0  # seconds for the committed/watermark look-ups during a rebalance
_CLOSE = None
_generations = count(1)


@dataclass
class _Partition:
    """Offsets fetched and not yet committable, for one assigned partition."""

    gen: int
    fetched: deque[int] = field(default_factory=deque)
    acked: set[int] = field(default_factory=set)
    commit: int | None = None  # next offset to commit, when it moved

    def unsettled(self) -> int:
        return len(self.fetched) - len(self.acked)


def _message(topic: str, raw: Any) -> Message:
    key = raw.key()
    headers = {
        name: (value.decode("utf-8", "replace") if isinstance(value, bytes) else value or "")
        for name, value in (raw.headers() or ())
    }
    return Message(
        topic=topic,
        body=raw.value() or b"",
        key=key.decode("utf-8", "replace") if isinstance(key, bytes) else key,
        headers=headers,
        id=f"{raw.partition()}:{raw.offset()}",
    )


class KafkaDelivery(Delivery):
    """A message fetched by a subscription; its offset commits once it (and those before) ack."""

    def __init__(
        self, sub: KafkaSubscription, message: Message, attempt: int, partition: int, gen: int,
        offset: int,
    ) -> None:  # fmt: skip
        super().__init__(message, attempt)
        self.sub = sub
        self.partition = partition
        self.gen = gen
        self.offset = offset

    async def _ack(self) -> None:
        self.sub.acks.put((self.partition, self.gen, self.offset))

    async def _nack(self, delay: float) -> None:
        await self.sub.nacked(self, delay)


class KafkaSubscription(Subscription):
    """A member of a Kafka consumer group on one topic."""

    def __init__(
        self,
        config: dict[str, Any],
        topic: str,
        *,
        earliest: bool,
        max_in_flight: int,
        dead_letter: Callable[[KafkaDelivery], Awaitable[None]] | None,
        translate: Callable[[BaseException], BaseException],
        max_deliveries: int | None,
    ) -> None:
        self.topic = topic
        self.acks: queue.SimpleQueue[tuple[int, int, int] | None] = queue.SimpleQueue()
        self._config = config
        self._earliest = earliest
        self._max_in_flight = max_in_flight
        self._dead_letter = dead_letter
        self._max_deliveries = max_deliveries
        self._translate = translate
        self._cooperative = "cooperative" in str(config.get("partition.assignment.strategy", ""))
        self._loop = asyncio.get_running_loop()
        self._ready: asyncio.Queue[KafkaDelivery | None] = asyncio.Queue()
        self._joined: asyncio.Future[None] = self._loop.create_future()
        self._done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._failure: BaseException | None = None
        # thread side
        self._partitions: dict[int, _Partition] = {}
        self._unsettled = 0
        self._paused = False
        self._thread = threading.Thread(
            target=self._run, name=f"ductwork-kafka-consumer-{topic}", daemon=True
        )

    # -- event loop side -------------------------------------------------------------------

    async def start(self, timeout: float) -> None:
        """Join the group; return once the first assignment (maybe empty) is in place."""
        self._thread.start()
        await asyncio.wait_for(asyncio.shield(self._joined), timeout)

    async def receive(self, timeout: float | None = None) -> Delivery | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._failure is not None:
                raise self._failure
            if self.closed:
                return None
            try:
                delivery = await get_until(self._ready, deadline)
            except TimeoutError:
                return None
            if delivery is None:
                continue  # a wake-up from close() or a failure
            part = self._partitions.get(delivery.partition)
            if part is not None and part.gen == delivery.gen:
                return delivery
            # The partition moved to another member since: it will deliver the message.

    async def nacked(self, delivery: KafkaDelivery, delay: float) -> None:
        """Deliver again from memory (offset stays uncommitted), or dead-letter it."""
        limit = self._max_deliveries
        if self._dead_letter is not None and limit is not None and delivery.attempt >= limit:
            try:
                await self._dead_letter(delivery)
            except BaseException:
                delivery.settled = False  # not moved: it stays with this group
                self._ready.put_nowait(delivery)
                raise
            await delivery._ack()
            return
        again = KafkaDelivery(
            self, delivery.message, delivery.attempt + 1, delivery.partition, delivery.gen,
            delivery.offset,
        )  # fmt: skip
        if delay > 0:
            self._loop.call_later(delay, self._requeue, again)
        else:
            self._ready.put_nowait(again)

    def _requeue(self, delivery: KafkaDelivery) -> None:
        if not self.closed:
            self._ready.put_nowait(delivery)

    def _push(self, batch: list[KafkaDelivery]) -> None:
        for delivery in batch:
            self._ready.put_nowait(delivery)

    def _signal_joined(self) -> None:
        if not self._joined.done():
            self._joined.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        exc = self._translate(exc)
        self._failure = exc
        if not self._joined.done():
            self._joined.set_exception(exc)
        self._ready.put_nowait(None)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._ready.put_nowait(None)
        self.acks.put(_CLOSE)
        if self._thread.ident is not None:  # started
            await asyncio.wrap_future(self._done)

    # -- consumer thread side --------------------------------------------------------------

    def _run(self) -> None:
        consumer: Consumer | None = None
        try:
            consumer = Consumer(self._config)
            consumer.subscribe(
                [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )  # fmt: skip
            while self._apply_acks(consumer):
                self._flow_control(consumer)
                raws = consumer.consume(FETCH_BATCH, POLL_TIMEOUT)
                if raws:
                    self._forward(raws)
                self._commit(consumer, asynchronous=True)
            self._commit(consumer, asynchronous=False)
        except BaseException as exc:  # handed to the loop: receive() raises it
            self._loop.call_soon_threadsafe(self._fail, exc)
        finally:
            try:
                if consumer is not None:
                    consumer.close()  # leave the group now: others take over at once
            except Exception as exc:  # the group times us out instead
                log.warning("closing Kafka consumer of %s: %s", self.topic, exc)
            self._done.set_result(None)

    def _apply_acks(self, consumer: Consumer) -> bool:
        """Apply queued acks; ``False`` once close was asked for."""
        while True:
            try:
                item = self.acks.get_nowait()
            except queue.Empty:
                return True
            if item is _CLOSE:
                return False
            partition, gen, offset = item
            part = self._partitions.get(partition)
            if part is None or part.gen != gen or offset in part.acked:
                continue  # revoked since: the new owner redelivers it
            part.acked.add(offset)
            self._unsettled -= 1
            fetched = part.fetched
            while fetched and fetched[0] in part.acked:
                done = fetched.popleft()
                part.acked.discard(done)
                part.commit = done + 1

    def _flow_control(self, consumer: Consumer) -> None:
        if not self._paused and self._unsettled >= self._max_in_flight:
            self._paused = True
            consumer.pause(consumer.assignment())
        elif self._paused and self._unsettled <= self._max_in_flight // 2:
            self._paused = False
            consumer.resume(consumer.assignment())

    def _forward(self, raws: list[Any]) -> None:
        batch = []
        for raw in raws:
            err = raw.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("Kafka consumer of %s: %s", self.topic, err.str())
                continue
            part = self._partitions.get(raw.partition())
            if part is None:
                continue
            part.fetched.append(raw.offset())
            self._unsettled += 1
            message = _message(self.topic, raw)
            batch.append(KafkaDelivery(self, message, 1, raw.partition(), part.gen, raw.offset()))
        if batch:
            self._loop.call_soon_threadsafe(self._push, batch)

    def _commit(
        self, consumer: Consumer, *, asynchronous: bool, only: set[int] | None = None
    ) -> None:
        offsets = []
        for number, part in self._partitions.items():
            if part.commit is not None and (only is None or number in only):
                offsets.append(TopicPartition(self.topic, number, part.commit))
                part.commit = None
        if offsets:
            try:
                if asynchronous:
                    consumer.commit(offsets=offsets, asynchronous=True)
                else:
                    consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:  # the messages come again: at least once
                log.warning("committing offsets of %s: %s", self.topic, exc)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            if partitions:
                partitions = self._anchor(consumer, partitions)
            for tp in partitions:
                self._partitions[tp.partition] = _Partition(next(_generations))
            if self._cooperative:
                consumer.incremental_assign(partitions)
            else:
                consumer.assign(partitions)
            if self._paused and partitions:
                consumer.pause(partitions)
        except BaseException as exc:
            self._loop.call_soon_threadsafe(self._fail, exc)
            raise
        self._loop.call_soon_threadsafe(self._signal_joined)

    def _anchor(self, consumer: Consumer, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """Start positions; commit one for each partition the group never committed."""
        positions = consumer.committed(partitions, timeout=CALL_TIMEOUT)
        anchors = []
        for tp in positions:
            if tp.offset < 0:
                low, high = consumer.get_watermark_offsets(tp, timeout=CALL_TIMEOUT)
                tp.offset = low if self._earliest else high
                anchors.append(TopicPartition(tp.topic, tp.partition, tp.offset))
        if anchors:
            consumer.commit(offsets=anchors, asynchronous=False)
        return positions

    def _drop(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            part = self._partitions.pop(tp.partition, None)
            if part is not None:
                self._unsettled -= part.unsettled()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._apply_acks_before_revoke(consumer)
        self._commit(consumer, asynchronous=False, only={tp.partition for tp in partitions})
        self._drop(partitions)

    def _apply_acks_before_revoke(self, consumer: Consumer) -> None:
        # Acks queued but not applied would be lost with the partition: apply them, keeping a
        # close request (if one is queued) for the main loop.
        if not self._apply_acks(consumer):
            self.acks.put(_CLOSE)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._drop(partitions)  # no longer ours: committing would fail or clobber
