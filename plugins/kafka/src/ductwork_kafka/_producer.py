"""The producer side: one idempotent producer whose delivery reports resolve asyncio futures.

Every call on the :class:`~confluent_kafka.Producer` that queues or serves messages happens
in one dedicated thread, as a raw ``produce`` loop followed by ``flush`` would: producing in
one thread while another serves delivery callbacks makes the two trade the GIL once per
message, which more than doubles the cost.

* Single publishes are gathered on the event loop: :meth:`ProducerBridge.enqueue` appends the
  message (with its future) to a pending list, and the first message of a list schedules one
  ``call_soon`` that hands the whole list to the thread as one job. Every message keeps its
  own delivery callback, so each future learns its own outcome (``"partition:offset"`` or its
  own error); a message refused by ``produce`` (too large, say) fails alone. A publish
  cancelled while it waits may still be written: only its future is dropped.
* Batches (``publish_many``) are jobs too, with one future for the whole batch.
* Jobs are produced in the order they were handed over, and a batch takes any pending single
  publishes ahead of it, so messages keep the order of the calls that published them.
* While messages are in flight the thread waits in ``flush(POLL_INTERVAL)``: what it queued
  is sent at once instead of after ``linger.ms`` (the publishes of a loop iteration are a
  batch already), and the reports are served. With ``linger.ms`` (or its alias) in the
  configuration it waits in ``poll`` instead, so librdkafka lingers as asked.
* When the local queue is full (``BufferError``) the thread serves delivery reports the same
  way until there is room again; the event loop never retries.

The delivery callbacks only append to a list; the thread hands each batch of results to the
event loop in one ``call_soon_threadsafe`` (one loop wake-up per batch, not per message). It
parks on a condition while nothing is in flight and no job waits, so a new job wakes it at
once; a job handed over while it waits for reports is picked up within ``POLL_INTERVAL``.

:meth:`ProducerBridge.close` has the thread produce every job handed over, wait (up to the
timeout) for their delivery reports, then purge what is left: every publisher learns an
outcome, none is left waiting. Jobs handed over after that fail at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

__all__ = ["Batch", "Headers", "Outcome", "ProducerBridge"]

log = logging.getLogger("ductwork.kafka")

Headers = list[tuple[str, str | bytes | None]] | None
#: A publish's outcome: ``None``, the delivery report's error, or what ``produce`` raised;
#: then the message id (``"partition:offset"``) when it was confirmed.
Outcome = tuple[KafkaError | Exception | None, str | None]
_Settled = tuple[asyncio.Future[Outcome], KafkaError | Exception | None, str | None]
# Errors after which this producer's id/epoch is refused for good (a restarted broker that lost
# its producer state fences it): only a new producer publishes again.
_FENCED = frozenset(
    {
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
        KafkaError.INVALID_PRODUCER_ID_MAPPING,
    }
)
#: One single publish: topic, body, key, headers and the future its outcome resolves.
Single = tuple[str, bytes, bytes | None, Headers, asyncio.Future[Outcome]]

# Seconds one poll blocks while messages are in flight; also how long a job handed over
# meanwhile may wait (a poll cannot be interrupted), unless a delivery report comes first.
POLL_INTERVAL = 0.005
LINGER = ("linger.ms", "queue.buffering.max.ms")  # set in the config: batches wait for it
PARK_LIMIT = 1.0  # seconds the idle thread parks before looking again (a safety net)
PURGE_WAIT = 1.0  # seconds close() waits for the reports of purged messages


def _settle(batch: list[_Settled]) -> None:
    for fut, err, ident in batch:
        if not fut.done():  # the awaiting task may have been cancelled
            fut.set_result((err, ident))


def _not_queued() -> KafkaError:
    return KafkaError(KafkaError._PURGE_QUEUE, "not queued before the producer closed")


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
        self.failure: Exception | None = None
        self._reported = 0
        self._expected = -1
        self._error: KafkaError | None = None

    def on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        """Delivery callback of every message of the batch (poll thread)."""
        if err is not None and self._error is None:
            self._error = err
        self._reported += 1

    def produce(self, bridge: ProducerBridge) -> None:
        """Queue every message, serving reports when the local queue is full (poll thread)."""
        producer = bridge.producer
        produce, topic, key, headers = producer.produce, self.topic, self.key, self.headers
        on_delivery, bodies = self.on_delivery, self.bodies
        n = len(bodies)
        i = 0
        while i < n:
            try:
                for i in range(i, n):  # noqa: B020 - resumes where a full queue stopped it
                    produce(topic, bodies[i], key, -1, on_delivery, None, 0, headers)
                i = n
            except BufferError:  # the local queue is full: deliver some first
                if not bridge.wait_for_room():
                    self.failure = KafkaException(_not_queued())
                    break
            except Exception as exc:  # refused by produce: stop here, report it
                self.failure = exc
                break
        self.sent = self._expected = i
        self.bodies = []

    def fail(self, err: KafkaError) -> None:
        """Give up on reports still missing (or on producing at all): the producer closed."""
        if self.failure is None:
            self.failure = KafkaException(err)
        self.bodies = []
        self._expected = self._reported

    def done(self) -> bool:
        """Every queued message has reported (poll thread)."""
        return self._reported == self._expected

    def outcome(self) -> _Settled:
        """What the batch's future resolves to."""
        return (self.fut, self._error, None)


class _Singles:
    """Single publishes handed over together; each message reports to its own future."""

    __slots__ = ("items",)

    def __init__(self, items: list[Single]) -> None:
        self.items = items

    def produce(self, bridge: ProducerBridge) -> None:
        """Queue every message (poll thread); one refused by ``produce`` fails alone."""
        produce = bridge.producer.produce
        on_delivery, settled = bridge.on_delivery, bridge.settled
        items = self.items
        n = len(items)
        i = 0
        while i < n:
            topic, body, key, headers, fut = items[i]
            try:
                produce(topic, body, key, -1, partial(on_delivery, fut), None, 0, headers)
            except BufferError:  # the local queue is full: deliver some, then retry this one
                if bridge.wait_for_room():
                    continue
                err = _not_queued()
                settled.extend((item[4], err, None) for item in items[i:])
                break
            except Exception as exc:  # e.g. larger than message.max.bytes: only this one fails
                settled.append((fut, exc, None))
            i += 1
        self.items = []

    def fail(self, err: KafkaError) -> list[_Settled]:
        """Never produced (the producer closed first)."""
        items, self.items = self.items, []
        return [(item[4], err, None) for item in items]


class ProducerBridge:
    """Owns the :class:`~confluent_kafka.Producer` and the thread that produces and polls."""

    def __init__(
        self,
        config: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        on_fenced: Callable[[ProducerBridge], None] | None = None,
    ) -> None:
        self.producer = Producer(config)
        self.loop = loop
        self._on_fenced = on_fenced
        self.settled: list[_Settled] = []
        self.left = 0
        self._pending: list[Single] = []
        self._jobs: deque[Batch | _Singles] = deque()
        self._open: list[Batch] = []
        self._wake = threading.Condition()
        self._parked = False
        self._stop = threading.Event()
        self._closed = False  # the thread took its last job
        self._deadline = float("inf")  # when close() gives up waiting (monotonic)
        # flush() sends what is queued at once; poll() lets librdkafka wait linger.ms first.
        self._at_once = not any(name in config for name in LINGER)
        self._thread = threading.Thread(
            target=self._run, name="ductwork-kafka-producer", daemon=True
        )
        self._thread.start()

    # -- event loop side -------------------------------------------------------------------

    def enqueue(self, item: Single) -> None:
        """Add one publish to the pending list; the first of a list schedules its hand-over."""
        pending = self._pending
        pending.append(item)
        if len(pending) == 1:
            self.loop.call_soon(self.submit_pending)

    def submit_pending(self) -> None:
        """Hand the pending single publishes to the poll thread as one job."""
        if self._pending:
            items, self._pending = self._pending, []
            self._submit(_Singles(items))

    def submit(self, batch: Batch) -> None:
        """Have the poll thread produce ``batch`` (after the pending single publishes)."""
        self.submit_pending()
        self._submit(batch)

    def _submit(self, job: Batch | _Singles) -> None:
        with self._wake:
            if not self._closed:
                self._jobs.append(job)
                if self._parked:
                    self._wake.notify()
                return
        # The thread is gone (close() returned): nothing will produce it.
        if isinstance(job, Batch):
            job.fail(_not_queued())
            _settle([job.outcome()])
        else:
            _settle(job.fail(_not_queued()))

    # -- poll thread side -------------------------------------------------------------------

    def on_delivery(
        self, fut: asyncio.Future[Outcome], err: KafkaError | None, msg: Message
    ) -> None:
        """Delivery callback of a single publish (poll thread)."""
        ident = None if err is not None else f"{msg.partition()}:{msg.offset()}"
        self.settled.append((fut, err, ident))

    def wait_for_room(self) -> bool:
        """Serve reports until the local queue may have room; ``False`` past close's deadline."""
        self._serve_reports()
        self._hand_over()
        return time.monotonic() < self._deadline

    def _serve_reports(self) -> None:
        if self._at_once:
            self.producer.flush(POLL_INTERVAL)  # sends what is queued at once
        else:
            self.producer.poll(POLL_INTERVAL)

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
            if self._on_fenced is not None and any(
                isinstance(err, KafkaError) and err.code() in _FENCED for _, err, _ in batch
            ):
                self.loop.call_soon_threadsafe(self._on_fenced, self)

    def _produce_jobs(self) -> None:
        jobs = self._jobs
        while jobs:
            job = jobs.popleft()
            job.produce(self)
            if isinstance(job, Batch):
                self._open.append(job)

    def _park(self) -> None:
        with self._wake:
            self._parked = True  # under the lock: a submitter seeing False finds us awake
            if not self._jobs and len(self.producer) == 0 and not self._stop.is_set():
                self._wake.wait(PARK_LIMIT)
            self._parked = False

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException:  # never leave publishers waiting on a dead thread
            log.exception("the Kafka producer thread failed: failing what is in flight")
            self._deadline = time.monotonic()
        finally:
            self._drain()

    def _serve(self) -> None:
        producer = self.producer
        while not self._stop.is_set():
            self._produce_jobs()
            if len(producer):
                self._serve_reports()
            else:
                producer.poll(0)
            self._hand_over()
            if len(producer) == 0 and not self._jobs:
                self._park()

    def _drain(self) -> None:
        """Produce what was handed over, wait for reports until the deadline, purge the rest.

        Jobs handed over after this are failed on the spot (see :meth:`_submit`).
        """
        producer = self.producer
        self._produce_jobs()
        while len(producer) and (wait := self._deadline - time.monotonic()) > 0:
            producer.flush(min(POLL_INTERVAL, wait))
            self._hand_over()
        self.left = len(producer)
        if self.left:  # fail what could not be delivered rather than leave publishers waiting
            producer.purge()
            producer.flush(PURGE_WAIT)
        with self._wake:
            self._closed = True
            late, self._jobs = list(self._jobs), deque()
        err = _not_queued()
        for job in late:
            if isinstance(job, Batch):
                job.fail(err)
                self._open.append(job)
            else:
                self.settled.extend(job.fail(err))
        for batch in self._open:
            if not batch.done():  # reports lost even after the purge: fail it anyway
                batch.fail(err)
        self._hand_over()

    def close(self, timeout: float) -> int:
        """Stop, wait up to ``timeout`` s for what is in flight; return how many were left.

        Call :meth:`submit_pending` on the event loop first, so publishes already made are
        produced (and confirmed or failed) rather than dropped.
        """
        self._deadline = time.monotonic() + timeout
        self._stop.set()
        with self._wake:
            self._wake.notify()
        self._thread.join()
        return self.left
