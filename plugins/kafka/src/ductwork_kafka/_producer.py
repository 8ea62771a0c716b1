"""The producer side: one idempotent producer whose delivery reports resolve asyncio futures.

librdkafka calls delivery callbacks from inside ``poll()``, and the Python binding takes the
GIL for each one. A dedicated thread polls; the callbacks only append to a list, and the
thread hands each polled batch of results to the event loop in one ``call_soon_threadsafe``
(one loop wake-up per batch, not per message).

The thread parks on a condition while nothing is in flight, so it can be woken at once.
Batches (``publish_many``) are queued by the same thread that serves their delivery reports,
as a raw ``produce`` loop followed by ``flush`` would: producing in one thread while another
serves callbacks makes the two trade the GIL once per message, which doubles the cost.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

__all__ = ["Batch", "Outcome", "ProducerBridge"]

#: What a publish's future resolves to: the delivery error (or ``None``) and the message id.
Outcome = tuple[KafkaError | None, str | None]
_Settled = tuple[asyncio.Future[Outcome], KafkaError | None, str | None]
Headers = list[tuple[str, str | bytes | None]] | None

POLL_INTERVAL = 0.05  # seconds one poll blocks while messages are in flight
PARK_LIMIT = 1.0  # seconds the idle thread parks before looking again (a safety net)


def _settle(batch: list[_Settled]) -> None:
    for fut, err, ident in batch:
        if not fut.done():  # the awaiting task may have been cancelled
            fut.set_result((err, ident))


class Batch:
    """The messages of one ``publish_many`` call, produced and counted in the poll thread."""

    def __init__(
        self,
        fut: asyncio.Future[Outcome],
        topic: str,
        bodies: list[bytes],
        key: bytes | None,
        headers: Headers,
    ) -> None:
        self.fut = fut
        self.topic = topic
        self.bodies = bodies
        self.key = key
        self.headers = headers
        self.sent = 0
        self.failure: KafkaException | None = None
        self._reported = 0
        self._expected = -1
        self._error: KafkaError | None = None

    def on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        """Delivery callback of every message of the batch (poll thread)."""
        if err is not None and self._error is None:
            self._error = err
        self._reported += 1

    def produce(self, producer: Producer) -> None:
        """Queue every message, serving reports when the local queue is full (poll thread)."""
        produce, topic, key, headers = producer.produce, self.topic, self.key, self.headers
        on_delivery, bodies = self.on_delivery, self.bodies
        n = len(bodies)
        i = 0
        while i < n:
            try:
                for i in range(i, n):  # noqa: B020 - resumes where a full queue stopped it
                    produce(topic, bodies[i], key, on_delivery=on_delivery, headers=headers)
                i = n
            except BufferError:  # the local queue is full: deliver some first
                producer.poll(POLL_INTERVAL)
            except KafkaException as exc:
                self.failure = exc
                break
        self.sent = self._expected = i
        self.bodies = []

    def done(self) -> bool:
        """Every queued message has reported (poll thread)."""
        return self._reported == self._expected

    def outcome(self) -> _Settled:
        """What the batch's future resolves to."""
        return (self.fut, self._error, None)


class ProducerBridge:
    """Owns the :class:`~confluent_kafka.Producer` and the thread that polls it."""

    def __init__(self, config: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        self.producer = Producer(config)
        self.loop = loop
        self.settled: list[_Settled] = []
        self.parked = False
        self._jobs: deque[Batch] = deque()
        self._open: list[Batch] = []
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="ductwork-kafka-producer", daemon=True
        )
        self._thread.start()

    def callback(
        self, fut: asyncio.Future[Outcome]
    ) -> Callable[[KafkaError | None, Message], None]:
        """The delivery callback resolving ``fut`` for one message."""
        return partial(self._on_delivery, fut)

    def _on_delivery(
        self, fut: asyncio.Future[Outcome], err: KafkaError | None, msg: Message
    ) -> None:
        ident = None if err is not None else f"{msg.partition()}:{msg.offset()}"
        self.settled.append((fut, err, ident))

    def wake(self) -> None:
        """Unpark the poll thread: call after queuing a message (event loop, cheap if busy)."""
        if self.parked:
            with self._wake:
                self._wake.notify()

    def submit(self, batch: Batch) -> None:
        """Have the poll thread produce ``batch``; its future settles once all reported."""
        self._jobs.append(batch)
        with self._wake:
            self._wake.notify()

    def _hand_over(self) -> None:
        if self._open:
            finished = [b for b in self._open if b.done()]
            if finished:
                self._open = [b for b in self._open if not b.done()]
                self.settled.extend(b.outcome() for b in finished)
        if self.settled:
            # Swap before scheduling: callbacks only run in this thread, so nothing is lost.
            batch, self.settled = self.settled, []
            self.loop.call_soon_threadsafe(_settle, batch)

    def _park(self) -> None:
        with self._wake:
            self.parked = True  # set before looking, so a publisher seeing False finds work
            if not self._jobs and len(self.producer) == 0 and not self._stop.is_set():
                self._wake.wait(PARK_LIMIT)
            self.parked = False

    def _run(self) -> None:
        producer = self.producer
        while not self._stop.is_set():
            while self._jobs:
                job = self._jobs.popleft()
                job.produce(producer)
                self._open.append(job)
            producer.poll(POLL_INTERVAL if len(producer) else 0)
            self._hand_over()
            if len(producer) == 0 and not self._jobs:
                self._park()

    def close(self, timeout: float) -> int:
        """Stop polling, wait up to ``timeout`` s for what is in flight; return what is left."""
        self._stop.set()
        with self._wake:
            self._wake.notify()
        self._thread.join()
        for job in self._jobs:  # submitted after the thread stopped
            job.produce(self.producer)
            self._open.append(job)
        left = self.producer.flush(timeout)
        if left:  # fail what could not be delivered rather than leave publishers waiting
            self.producer.purge()
            self.producer.flush(0)
        self._hand_over()
        return left
