"""The sync facade: one client shared by threads, usable inside a running loop, real iterators."""

from __future__ import annotations

import asyncio
import threading
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
from ductwork import SyncDuctwork
from ductwork.errors import DuctworkError, NotFoundError, ValidationError

THREADS = 8
CALLS = 50


@pytest.fixture
def sdw(product_dir):
    config = product_dir / "ductwork.yaml"
    # memory caches of one namespace share values within a process: this test's own
    own = f"{{provider: memory, namespace: {uuid.uuid4().hex}}}"
    config.write_text(config.read_text().replace("{provider: memory}", own))
    with SyncDuctwork.from_config(config, env="dev") as client:
        yield client


def test_eight_threads_share_one_client_and_every_write_is_visible(sdw, recwarn):
    sdw.databases.action.execute("main", "create_users_table")
    start = threading.Barrier(THREADS)

    def work(thread: int) -> int:
        start.wait()
        for i in range(CALLS):
            n = thread * CALLS + i
            sdw.storage.save("files", f"t/{n}.txt", str(n))
            sdw.caches.set("hot", f"k{n}", n)
            sdw.databases.action.execute(
                "main", "add_user", {"id": n, "name": f"u{n}", "email": f"{n}@x"}
            )
        return thread

    with ThreadPoolExecutor(THREADS) as pool:
        assert sorted(pool.map(work, range(THREADS))) == list(range(THREADS))

    for n in range(THREADS * CALLS):
        assert sdw.storage.read_file("files", f"t/{n}.txt") == str(n).encode()
        assert sdw.caches.get("hot", f"k{n}") == n
        assert sdw.databases.action.execute("main", "get_user", {"id": n})["name"] == f"u{n}"
    assert not [w for w in recwarn if "never" in str(w.message)]


def test_a_call_from_inside_a_running_loop_works_as_in_a_notebook(sdw):
    async def cell() -> bytes:
        sdw.storage.save("files", "nb.txt", "from a notebook")
        return sdw.storage.read_file("files", "nb.txt")

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine was never awaited" would fail here
        assert asyncio.run(cell()) == b"from a notebook"


def test_stream_is_an_iterator_read_a_chunk_at_a_time(sdw):
    sdw.storage.save("files", "big.bin", b"x" * 10_000)
    chunks = sdw.storage.stream("files", "big.bin", chunk_size=1000)
    assert not isinstance(chunks, list)
    first = next(chunks)
    assert first == b"x" * 1000
    assert b"".join([first, *chunks]) == b"x" * 10_000
    early = sdw.storage.stream("files", "big.bin", chunk_size=1000)
    assert next(early) == b"x" * 1000
    early.close()  # the provider's stream is closed on the loop
    assert list(early) == []


def test_errors_are_the_async_clients_own(sdw):
    with pytest.raises(NotFoundError):
        sdw.storage.read_file("files", "missing.txt")
    with pytest.raises(ValidationError):
        sdw.caches.set("hot", "", 1)


def test_transactions_are_context_managers(sdw):
    sdw.databases.action.execute("main", "create_users_table")
    with sdw.databases.transaction("main") as tx:
        tx.action("add_user", {"id": 1, "name": "a", "email": "a@x"})
    assert sdw.databases.action.execute("main", "get_user", {"id": 1})["name"] == "a"


def test_close_drains_and_later_calls_fail_clearly(product_dir):
    client = SyncDuctwork.from_config(product_dir / "ductwork.yaml", env="dev")
    client.caches.set("hot", "a", 1)
    client.close()
    client.close()  # idempotent
    with pytest.raises(DuctworkError, match="closed"):
        client.caches.get("hot", "a")
    assert not [t for t in threading.enumerate() if t.name == "ductwork-sync"]


def test_a_call_from_the_clients_own_loop_is_refused_not_deadlocked(sdw):
    async def inside() -> None:
        sdw.caches.get("hot", "a")

    with pytest.raises(RuntimeError, match="its own event loop"):
        sdw.run(inside)


def test_a_plain_function_handles_events_and_may_use_the_client(sdw):
    ready, seen = threading.Event(), []

    def handler(event) -> None:  # runs in a worker thread: blocking calls are fine
        sdw.caches.set("hot", f"seen:{event.data['n']}", True)
        seen.append(event.data["n"])

    consumer = threading.Thread(
        target=lambda: sdw.events.subscribe(
            "bus", "user_created", handler, group="sync-test", limit=3, ready=ready
        )
    )
    consumer.start()
    assert ready.wait(30)
    for n in range(3):
        sdw.events.publish("bus", "user_created", {"n": n})
    consumer.join(30)
    assert sorted(seen) == [0, 1, 2]
    assert all(sdw.caches.get("hot", f"seen:{n}") for n in range(3))


def test_a_client_inherited_through_fork_says_so(sdw):
    import multiprocessing

    def child(queue) -> None:
        try:
            sdw.caches.get("hot", "a")
        except DuctworkError as exc:
            queue.put(str(exc))

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    process = ctx.Process(target=child, args=(queue,))
    process.start()
    process.join(30)
    assert "before the process forked" in queue.get(timeout=5)


def test_providers_from_the_escape_hatch_are_blocking_too(sdw):
    cache = sdw.provider("caches", "hot")
    cache.set("raw", b"bytes")
    assert cache.get("raw") == b"bytes"
