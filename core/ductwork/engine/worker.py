"""The asyncio worker: claims due runs, executes them, heartbeats, schedules, reaps.

One process runs ``concurrency`` runs at a time as asyncio tasks. Alongside: a heartbeat task
(extends leases every ``heartbeat`` seconds and stops runs that were cancelled or whose lease
was lost), a ticker (fires due schedule slots and re-queues runs with expired leases), and on
Postgres a LISTEN connection that wakes the claim loop early (reconnecting if it drops: polling
every ``poll_interval`` is what correctness rests on). Database errors are retried with backoff,
so a database restart pauses the worker instead of stopping it.

Throughput: claims take as many runs as there are free slots (and claim again at once when the
batch came back full); outcomes — successes, failures, cancellations — are queued to one flusher
task that records every pending outcome in a single transaction, each fenced by its own lease
epoch (a failure is re-queued after its own backoff, or ends the run). A run stays in flight
(its lease heartbeated) until its outcome is committed.

With ``retention`` (ages by finished status), a pruner task removes finished runs past their
age every ``prune_every`` seconds, in small batches, one worker at a time (see
:mod:`ductwork.engine.retention`).

``stop()`` (SIGTERM/SIGINT under :meth:`Worker.serve`) stops claiming, lets in-flight runs
finish for ``grace`` seconds, then cancels the rest and gives them back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ductwork._redact import get_logger
from ductwork.engine.connect import refused, unreachable
from ductwork.engine.executors import executor_for
from ductwork.engine.retention import prune_round
from ductwork.engine.scheduler import fire_due
from ductwork.engine.spec import final
from ductwork.engine.steps import CurrentRun, Parked, current_run, wake_due
from ductwork.engine.store import NOTIFY_CHANNEL, Claimed, Failure, Store, transient

if TYPE_CHECKING:
    from ductwork.client import Ductwork

__all__ = ["Worker"]

log = get_logger("ductwork.worker")
T = TypeVar("T")
_BATCH = 500  # outcomes of each kind per flush transaction


class Worker:
    """Runs jobs from one run store."""

    def __init__(
        self,
        client: Ductwork | None,
        store: Store,
        *,
        concurrency: int = 10,
        queues: Sequence[str] | None = None,
        lease: float = 30.0,
        heartbeat: float = 5.0,
        poll_interval: float = 0.5,
        tick: float = 1.0,
        grace: float = 10.0,
        limits: Mapping[str, int] | None = None,
        scheduler: bool = True,
        listen_url: str | None = None,
        worker_id: str | None = None,
        burst: bool = False,
        retention: Mapping[str, float | None] | None = None,
        prune_every: float = 60.0,
        prune_batch: int = 500,
    ) -> None:
        self.client = client
        self.store = store
        self.concurrency = concurrency
        self.queues = list(queues) if queues else None
        self.lease = lease
        self.heartbeat_every = heartbeat
        self.poll_interval = poll_interval
        self.tick = tick
        self.grace = grace
        self.limits = dict(limits or {})
        self.scheduler = scheduler
        self.listen_url = listen_url
        self.burst = burst
        # finished runs' ages by status (None: no pruning from this worker)
        self.retention = dict(retention) if retention is not None else None
        self.prune_every = prune_every
        self.prune_batch = prune_batch
        self.pruned = 0
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.executed = 0
        self.op_timeout = max(5.0, lease / 2)
        self._inflight: dict[str, tuple[Claimed, asyncio.Task[None]]] = {}
        self._reasons: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        # outcomes waiting to be recorded: one fenced transaction for all of them
        self._succeeded: list[tuple[Claimed, Any, asyncio.Future[bool]]] = []
        self._failed: list[tuple[Failure, asyncio.Future[str | None]]] = []
        self._flush_wake = asyncio.Event()

    def stop(self) -> None:
        """Stop claiming and shut down gracefully."""
        self._stopping.set()
        self._wake.set()

    async def serve(self) -> None:
        """Run until SIGTERM or SIGINT."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        try:
            await self.run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def _retrying(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """``op()``, retried with backoff while the database is unreachable."""
        delay = 0.05
        while True:
            try:
                # bounded: a query on a connection that died silently must not hang the run
                return await asyncio.wait_for(op(), self.op_timeout)
            except Exception as exc:
                self._give_up_unless_transient(exc)
                log.warning("%s failed (%s); retrying in %.2fs", what, type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _give_up_unless_transient(self, exc: Exception) -> None:
        """Return if retrying ``exc`` may succeed; else raise it (a refused login, translated)."""
        if transient(exc):
            return
        cls = refused(exc)
        if cls is not None:  # e.g. the worker's role lost its login: no retry can fix that
            raise unreachable(self.store.url, exc, 1, 0.0, cls) from exc
        raise exc

    async def run(self) -> None:
        """The claim loop; returns after a graceful stop (or, with ``burst``, once idle)."""
        await self._retrying("register", self._beat)
        helpers = [
            asyncio.create_task(self._heartbeats()),
            asyncio.create_task(self._ticks()),
            asyncio.create_task(self._flusher()),
        ]
        if self.listen_url and self.store.dialect == "postgresql":
            helpers.append(asyncio.create_task(self._listen()))
        if self.retention and any(age is not None for age in self.retention.values()):
            helpers.append(asyncio.create_task(self._prunes()))
        try:
            while not self._stopping.is_set():
                for helper in helpers:  # a helper that died of a permanent error ends the worker
                    died = helper.exception() if helper.done() and not helper.cancelled() else None
                    if died is not None:
                        raise died
                # cleared before claiming, so a completion or NOTIFY during the claim is not lost
                self._wake.clear()
                free = self.concurrency - len(self._inflight)
                got: list[Claimed] = []
                if free > 0:
                    got = await self._retrying("claim", functools.partial(self._claim, free))
                    for claimed in got:
                        task = asyncio.create_task(self._execute(claimed))
                        self._inflight[claimed.id] = (claimed, task)
                        task.add_done_callback(functools.partial(self._done, claimed.id))
                if free > 0 and len(got) == free:
                    continue  # there may be more work: claim again at once
                if self.burst and not got and not self._inflight:
                    # Idle: fire what is due now (schedules, parked runs) and end if nothing is.
                    if await self._retrying("tick", self._tick):
                        continue
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
        finally:
            await self._shutdown(helpers)

    async def _claim(self, n: int) -> list[Claimed]:
        return await self.store.claim(
            self.id, n, queues=self.queues, lease=self.lease, limits=self.limits
        )

    def _done(self, run_id: str, _task: object = None) -> None:
        self._inflight.pop(run_id, None)
        self._reasons.pop(run_id, None)
        self._wake.set()

    async def _execute(self, c: Claimed) -> None:
        try:
            fn = executor_for(c.kind)
            client = self.client
            if client is None:
                raise RuntimeError("this worker has no client to run jobs through")
            current_run.set(CurrentRun(self.store, c, self.id))  # for feature runs' checkpoints
            call = fn(client, c.target, c.input, c.env)
            result = await (asyncio.wait_for(call, c.timeout) if c.timeout else call)
        except Parked:  # a feature run parked itself (sleep, wait): no worker holds it now
            return
        except asyncio.CancelledError:
            reason = self._reasons.get(c.id)
            if reason == "cancel":
                await self._record_failure(c, "Cancelled", "cancelled", cancelled=True)
            elif reason is None:
                raise  # shutdown: _shutdown releases the run
            return
        except TimeoutError:
            await self._record_failure(c, "TimeoutError", f"timed out after {c.timeout:g}s")
        except Exception as exc:
            await self._record_failure(c, type(exc).__name__, str(exc), final=final(exc))
        else:
            done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            self._succeeded.append((c, result, done))
            self._flush_wake.set()
            # the run stays in flight (its lease extended) until its success is committed
            ok = await done
            if ok:
                self.executed += 1
            else:
                log.warning("run %s: lease lost before completion; result discarded", c.id)

    async def _record_failure(
        self,
        c: Claimed,
        error_type: str,
        message: str,
        *,
        cancelled: bool = False,
        final: bool = False,
    ) -> None:
        done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._failed.append((Failure(c, error_type, message, cancelled, final), done))
        self._flush_wake.set()
        # as with a success: in flight (its lease extended) until the failure is committed
        status = await done
        level = logging.WARNING if status == "failed" else logging.INFO
        log.log(
            level,
            "run %s attempt %d: %s: %s -> %s",
            c.id,
            c.attempt,
            error_type,
            message,
            status or "lease lost",
        )

    async def _flusher(self) -> None:
        """Record pending outcomes in batches: one fenced transaction per batch."""
        while True:
            await self._flush_wake.wait()
            self._flush_wake.clear()
            while self._succeeded or self._failed:
                successes, self._succeeded = self._succeeded[:_BATCH], self._succeeded[_BATCH:]
                failures, self._failed = self._failed[:_BATCH], self._failed[_BATCH:]
                futures: list[asyncio.Future[Any]] = [f for *_, f in successes]
                futures += [f for _, f in failures]
                try:
                    oks, statuses = await self._retrying(
                        "record outcomes",
                        functools.partial(
                            self.store.complete_many,
                            self.id,
                            [(c, r) for c, r, _ in successes],
                            [failure for failure, _ in failures],
                        ),
                    )
                except Exception as exc:
                    for fut in futures:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for fut, value in zip(futures, [*oks, *statuses], strict=True):
                    if not fut.done():
                        fut.set_result(value)

    async def _beat(self) -> tuple[dict[str, Claimed], dict[str, tuple[int, bool]]]:
        """Extend the leases of the runs in flight now: those runs, and what the store says."""
        sent = {run_id: claimed for run_id, (claimed, _) in self._inflight.items()}
        held = await self.store.heartbeat(
            self.id, self.lease, queues=self.queues, concurrency=self.concurrency, held=list(sent)
        )
        return sent, held

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_every)
            try:
                sent, held = await self._beat()
            except Exception as exc:
                self._give_up_unless_transient(exc)
                log.warning("heartbeat failed (%s)", type(exc).__name__)
                continue
            self._judge(sent, held)

    def _judge(self, sent: dict[str, Claimed], held: dict[str, tuple[int, bool]]) -> None:
        """Stop the runs a heartbeat found lost or cancelled.

        Only the runs that beat asked about: one claimed while it waited for the write lock
        was not in it, and is not lost (judging it so left it unrun until its lease expired).
        """
        for run_id, claimed in sent.items():
            inflight = self._inflight.get(run_id)
            if inflight is None or inflight[0] is not claimed:
                continue  # it ended (or was re-claimed) meanwhile
            found = held.get(run_id)
            if found is None or found[0] != claimed.epoch:
                self._reasons[run_id] = "lost"
                inflight[1].cancel()
            elif found[1]:
                self._reasons[run_id] = "cancel"
                inflight[1].cancel()

    async def _tick(self) -> bool:
        """Fire due schedule slots, reap expired leases, wake parked runs: whether any was."""
        woke = bool(self.scheduler and await fire_due(self.store))
        woke = bool(await self.store.reap()) or woke
        woke = bool(await wake_due(self.store)) or woke  # parked feature runs whose time came
        if woke:
            self._wake.set()
        return woke

    async def _ticks(self) -> None:
        while True:
            try:
                await self._tick()
            except Exception as exc:
                self._give_up_unless_transient(exc)
                log.warning("scheduler tick failed (%s)", type(exc).__name__)
            await asyncio.sleep(self.tick)

    async def _prunes(self) -> None:
        """Retention: a round every ``prune_every`` seconds (one worker prunes at a time)."""
        assert self.retention is not None
        while True:
            await asyncio.sleep(self.prune_every)
            try:
                removed = await prune_round(self.store, self.retention, self.prune_batch)
            except Exception as exc:
                self._give_up_unless_transient(exc)
                log.warning("pruning failed (%s)", type(exc).__name__)
                continue
            if removed:
                self.pruned += removed
                log.info("pruned %d finished run(s)", removed)

    async def _listen(self) -> None:
        import asyncpg  # type: ignore[import-untyped]  # no stubs; only connect/listen used

        assert self.listen_url is not None
        dsn = self.listen_url.replace("postgresql+asyncpg://", "postgresql://")
        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(dsn)
                await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
                self._wake.set()  # catch up on anything missed while disconnected
                while not conn.is_closed():
                    await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("LISTEN connection lost (%s); reconnecting", type(exc).__name__)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)
            await asyncio.sleep(0.5)

    async def _shutdown(self, helpers: list[asyncio.Task[Any]]) -> None:
        tasks = [task for _, task in self._inflight.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=self.grace)
        left = list(self._inflight.values())
        for _, task in left:
            task.cancel()
        if left:
            await asyncio.wait([t for _, t in left])
            with contextlib.suppress(Exception):
                await self.store.release(self.id, [(c.id, c.epoch) for c, _ in left])
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.store.remove_worker(self.id)
