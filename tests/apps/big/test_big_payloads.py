"""400 MB responses in bounded memory: peak RSS of a child process doing the call.

The server (conftest) generates each 400 MB body on the fly; a child process runs the action —
refused at the limit, or saved with ``save_to`` into local storage or S3 on moto, or dispatched
and run by ``ductwork worker --burst`` — and its peak RSS (``VmHWM``, or ``ru_maxrss`` of a
wrapper's only child) must stay under 150 MB (reading the body whole took 850 MB). What was
stored is checked byte for byte by size and SHA-256 in this process.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.testing.servers import moto_server

MiB = 1 << 20
BIG = 400 * MiB
LIMIT = 32 * MiB
PEAK = 150 * MiB

CHILD = """
import asyncio, json, sys
from pathlib import Path
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.errors import ProviderError

async def main(spec):
    out = []
    async with Ductwork(Config.load(Path(spec["config"])), env="dev") as dw:
        for call in spec["calls"]:
            save_to = tuple(call["save_to"]) if call.get("save_to") else None
            try:
                result = await dw.actions.run("files", "get", call["input"], save_to=save_to)
                out.append({"status": result.status, "saved": result.to_dict().get("saved")})
            except ProviderError as exc:
                out.append({"error": str(exc)})
    return out

spec = json.loads(sys.argv[1])
calls = asyncio.run(main(spec))
# VmHWM: this process's own peak (ru_maxrss would include the parent's RSS, kept over exec)
status = open("/proc/self/status").read()
peak = int(status.split("VmHWM:")[1].split()[0]) * 1024
print(json.dumps({"calls": calls, "peak": peak}))
"""

# runs argv as its only child and prints that child's peak RSS in bytes (its ru_maxrss also
# covers this small wrapper's memory at exec, not the test process's)
MEASURE = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
sys.exit(code)
"""


def q(**kw: Any) -> dict[str, str]:
    return {k: str(v) for k, v in kw.items()}


def write_config(server: Any, root: Path, **extra: Any) -> Path:
    path = root / "ductwork.yaml"
    path.write_text(yaml.safe_dump(server.config(root, **extra)))
    return path


def child(config: Path, calls: list[dict[str, Any]]) -> dict[str, Any]:
    spec = json.dumps({"config": str(config), "calls": calls})
    done = subprocess.run(
        [sys.executable, "-c", CHILD, spec], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


async def stored_digest(config: Path, storage: str, key: str) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    async with Ductwork(Config.load(config), env="dev") as dw:
        async for chunk in dw.storage.stream(storage, key):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def test_baseline_a_child_that_reads_nothing_stays_small(big_server, tmp_path):
    found = child(write_config(big_server, tmp_path), [])
    print(f"baseline peak RSS {found['peak'] / MiB:.0f} MiB")
    assert found["peak"] < 100 * MiB


def test_400_mb_answers_are_refused_at_the_limit_in_bounded_memory(big_server, tmp_path):
    ids = [big_server.new_id() for _ in range(3)]
    calls = [
        {"input": q(size=BIG, cl=1, id=ids[0])},
        {"input": q(size=BIG, cl=0, id=ids[1])},
        {"input": q(size=BIG, enc="gzip", zeros=1, id=ids[2])},
    ]
    found = child(write_config(big_server, tmp_path), calls)
    print(f"refusals: peak RSS {found['peak'] / MiB:.0f} MiB")
    errors = [c["error"] for c in found["calls"]]
    assert f"announced a body of {BIG} bytes" in errors[0]
    assert f"sent more than {LIMIT} bytes" in errors[1]
    assert f"sent more than {LIMIT} bytes" in errors[2]
    assert all("app 'files' action 'get'" in e and str(LIMIT) in e for e in errors)
    assert found["peak"] < PEAK
    assert big_server.state.finished(ids[0]) < 16 * MiB
    assert big_server.state.finished(ids[1]) < LIMIT + 16 * MiB


@pytest.mark.parametrize(
    "args", [{"cl": 1}, {"cl": 0}, {"enc": "gzip", "zeros": 1}], ids=["length", "chunked", "gzip"]
)
async def test_400_mb_are_saved_to_local_storage_in_bounded_memory(big_server, tmp_path, args):
    config = write_config(big_server, tmp_path)
    found = child(config, [{"input": q(size=BIG, **args), "save_to": ["files", "big/a.bin"]}])
    print(f"save to local {args}: peak RSS {found['peak'] / MiB:.0f} MiB")
    saved = found["calls"][0]["saved"]
    assert saved["size"] == BIG and saved["key"] == "big/a.bin"
    assert found["peak"] < PEAK
    zeros = bool(args.get("zeros"))
    assert await stored_digest(config, "files", "big/a.bin") == (
        BIG,
        big_server.sha256(BIG, zeros=zeros),
    )


@pytest.fixture(scope="module")
def moto_url():
    with moto_server() as server:
        yield server.url


async def test_400_mb_are_saved_to_s3_multipart_in_bounded_memory(big_server, tmp_path, moto_url):
    s3 = {
        "provider": "s3",
        "bucket": f"big-{uuid.uuid4().hex[:12]}",
        "endpoint_url": moto_url,
        "region": "us-east-1",
        "access_key_id": "AKIATESTDUCTWORK",
        "secret_access_key": "s3-test-secret",
        "create_bucket": True,
        "addressing_style": "path",
        # the provider holds up to multipart_threshold + a part; with its 8 MiB defaults the
        # peak was 143 MiB (132 MiB for the same save from a generator, without any HTTP)
        "multipart_threshold": 5 * MiB,
        "part_size": 5 * MiB,
    }
    config = write_config(big_server, tmp_path, storage={"bucket": {"dev": s3}})
    found = child(config, [{"input": q(size=BIG, cl=0), "save_to": ["bucket", "exports/r.bin"]}])
    print(f"save to s3: peak RSS {found['peak'] / MiB:.0f} MiB")
    assert found["calls"][0]["saved"]["size"] == BIG
    assert found["peak"] < PEAK
    assert await stored_digest(config, "bucket", "exports/r.bin") == (BIG, big_server.sha256(BIG))


async def test_a_dispatched_400_mb_save_runs_in_a_burst_worker_in_bounded_memory(
    big_server, tmp_path
):
    config = write_config(big_server, tmp_path)
    async with Ductwork(Config.load(config), env="dev") as dw:
        job = await dw.actions.dispatch(
            "files", "get", q(size=BIG, cl=0), save_to=("files", "later.bin")
        )
    exe = Path(sys.executable).parent / "ductwork"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            MEASURE,
            str(exe),
            "-c",
            str(config),
            "--env",
            "dev",
            "worker",
            "--burst",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    peak = int(done.stdout.strip().splitlines()[-1])
    print(f"dispatched save: worker peak RSS {peak / MiB:.0f} MiB")
    async with Ductwork(Config.load(config), env="dev") as dw:
        found = await dw.jobs.get(job.job_id)
    assert found.status == "succeeded", found
    assert found.result["saved"]["size"] == BIG
    assert peak < PEAK
    assert await stored_digest(config, "files", "later.bin") == (BIG, big_server.sha256(BIG))
