"""Feature durability with real worker processes, on SQLite and Postgres (bounded, loopback).

Side effects are rows in a real table (``features_app.count``). Workers use a 2 s lease.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from ductwork.client import Ductwork
from ductwork.config.loader import Config

from .conftest import clean, eventually
from .test_crash import Procs

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # features_app: the product's functions module

import features_app  # noqa: E402


class FeatureProcs(Procs):
    def worker(self, config: Path, *args: str) -> subprocess.Popen:
        fd, name = tempfile.mkstemp(prefix="dw-fworker-", suffix=".log")
        command = [sys.executable, str(HERE / "feature_worker.py"), str(config), *args]
        proc = subprocess.Popen(command, stdout=fd, stderr=fd)
        os.close(fd)
        self.logs.append(Path(name))
        self.procs.append(proc)
        return proc


@pytest.fixture
def procs():
    p = FeatureProcs()
    yield p
    p.stop_all()


@pytest.fixture
async def product(url: str, tmp_path: Path):
    side = f"sqlite:///{tmp_path}/side.db"
    file = features_app.write_product(tmp_path, url, side)
    async with Ductwork(Config.load(file), env="dev") as dw:
        await clean(await dw.jobs.store())
        yield dw, file, side


async def _status(dw: Ductwork, run_id: str) -> str:
    return (await dw.features.output(run_id)).status


async def _until(dw: Ductwork, run_id: str, status: str, what: str, timeout: float = 30) -> None:
    async def reached() -> bool:
        return await _status(dw, run_id) == status

    await eventually(reached, timeout=timeout, what=what)


async def test_kill_9_after_two_of_three_steps_another_worker_finishes(product, procs, tmp_path):
    dw, file, side = product
    victim = procs.worker(file, "--hang")
    handle = await dw.features.run("three", {"tag": "k9"}, wait=False)

    async def third_step_started() -> bool:
        return (tmp_path / f"started-{victim.pid}").exists()

    await eventually(third_step_started, what="the victim to reach the third step")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    procs.worker(file)
    await _until(dw, handle.run_id, "succeeded", "another worker to finish the run")
    shown = await dw.features.output(handle.run_id)
    assert shown.output == {"last": "k9:three"}
    assert {s["key"]: s["attempts"] for s in shown.steps} == {
        "main/one": 1,
        "main/two": 1,
        "main/three": 1,
    }
    events = [e["event"] for e in shown.timeline]
    assert "lease_expired" in events and events.count("step_succeeded") == 3
    # the two completed steps' side effects happened once; the third once (the victim hung
    # before its side effect)
    for what in ("k9:one", "k9:two", "k9:three"):
        assert await features_app.count(side, what) == 1, what


async def test_a_fault_between_side_effect_and_checkpoint_runs_the_step_again_once(
    product, procs, tmp_path
):
    dw, file, side = product
    (tmp_path / "fault-after-side-effect").write_text("")
    first = procs.worker(file)
    handle = await dw.features.run("three", {"tag": "f"}, wait=False)

    async def died() -> bool:
        return first.poll() is not None

    await eventually(died, what="the worker to die after the side effect")
    procs.worker(file)
    await _until(dw, handle.run_id, "succeeded", "the run to finish on another worker")
    assert await features_app.count(side, "f:one") == 1
    assert await features_app.count(side, "f:two") == 1
    assert await features_app.count(side, "f:three") == 2  # at-least-once: once more, no more


async def test_a_durable_sleep_survives_a_worker_restart(product, procs):
    dw, file, _ = product
    first = procs.worker(file)
    handle = await dw.features.run("sleepy", wait=False)
    await _until(dw, handle.run_id, "waiting", "the run to park in its sleep")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=15) == 0
    procs.worker(file)
    await _until(dw, handle.run_id, "succeeded", "the run to wake on the new worker")
    shown = await dw.features.output(handle.run_id)
    nap = next(s for s in shown.steps if s["key"] == "s/nap")
    assert nap["duration_ms"] >= 2000 and shown.output == "woke"
    assert [e["event"] for e in shown.timeline].count("parked") == 1


async def test_a_wait_resumes_on_a_signal_from_another_process(product, procs):
    dw, file, _ = product
    procs.worker(file)
    handle = await dw.features.run("approval", {"who": "ann"}, wait=False)
    await _until(dw, handle.run_id, "waiting", "the run to wait for its signal")
    sent = subprocess.run(
        [
            sys.executable,
            "-m",
            "ductwork",
            "features",
            "signal",
            handle.run_id,
            "approved",
            "--payload",
            json.dumps({"by": "bob"}),
            "--config",
            str(file),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=HERE,
    )
    assert sent.returncode == 0, sent.stderr
    await _until(dw, handle.run_id, "succeeded", "the signalled run to finish")
    assert (await dw.features.output(handle.run_id)).output == "ann by bob"


async def test_replay_resume_cancel_with_two_workers_on_postgres(pg_url, procs, tmp_path):
    side = f"sqlite:///{tmp_path}/side.db"
    file = features_app.write_product(tmp_path, pg_url, side)
    async with Ductwork(Config.load(file), env="dev") as dw:
        await clean(await dw.jobs.store())
        procs.worker(file)
        procs.worker(file)
        failed = await dw.features.run("flaky", wait=False)
        await _until(dw, failed.run_id, "failed", "the flaky run to fail")
        (tmp_path / "fails-hard").write_text("99")
        await dw.features.resume(failed.run_id)
        await _until(dw, failed.run_id, "succeeded", "the resumed run to succeed")
        assert {s["key"]: s["attempts"] for s in (await dw.features.output(failed.run_id)).steps}[
            "s/try"
        ] == 3  # kept from before the resume
        replayed = await dw.features.replay(failed.run_id, from_step="s/hard")
        await _until(dw, replayed.run_id, "succeeded", "the replay to succeed")
        waiting = await dw.features.run("approval", {"who": "x"}, wait=False)
        await _until(dw, waiting.run_id, "waiting", "the run to wait")
        assert (await dw.features.cancel(waiting.run_id)).status == "cancelled"
