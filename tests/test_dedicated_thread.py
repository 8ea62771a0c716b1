"""The thread embedded databases run their blocking calls on (``ductwork.builtin._thread``)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from ductwork.builtin._thread import DedicatedThread


async def test_calls_run_in_order_on_one_thread_and_answer_or_raise():
    thread = DedicatedThread("t")
    thread.start()
    try:
        seen: list[tuple[int, str]] = []

        def call(i: int) -> int:
            seen.append((i, threading.current_thread().name))
            return i * 2

        assert await asyncio.gather(*(thread.run(call, i) for i in range(50))) == [
            i * 2 for i in range(50)
        ]
        assert [i for i, _ in seen] == list(range(50))
        assert {name for _, name in seen} == {"t"} != {threading.current_thread().name}
        with pytest.raises(ZeroDivisionError):
            await thread.run(lambda: 1 / 0)
        assert await thread.run(call, 7) == 14  # an error does not stop the thread
    finally:
        thread.stop()
    assert not thread.running
    with pytest.raises(RuntimeError, match="not started"):
        await thread.run(lambda: None)


async def test_a_call_cancelled_before_it_starts_does_not_run():
    thread = DedicatedThread("t")
    thread.start()
    gate, ran = threading.Event(), []
    try:
        busy = asyncio.ensure_future(thread.run(gate.wait))
        later = asyncio.ensure_future(thread.run(ran.append, "later"))
        await asyncio.sleep(0)  # both are queued
        later.cancel()
        gate.set()
        assert await busy is True
        with pytest.raises(asyncio.CancelledError):
            await later
        assert await thread.run(ran.append, "next") is None
        assert ran == ["next"]
    finally:
        thread.stop()


async def test_stop_lets_queued_calls_finish():
    thread = DedicatedThread("t")
    thread.start()
    gate, done = threading.Event(), []
    busy = asyncio.ensure_future(thread.run(gate.wait))
    queued = [asyncio.ensure_future(thread.run(done.append, i)) for i in range(3)]
    await asyncio.sleep(0)  # all four are queued
    stopping = asyncio.ensure_future(asyncio.to_thread(thread.stop))
    gate.set()
    await stopping  # returns once the queue is drained
    assert done == [0, 1, 2] and not thread.running
    assert await busy is True and await asyncio.gather(*queued) == [None] * 3
