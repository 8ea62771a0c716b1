"""The refresh race across processes: two refreshes of one token, exactly one succeeds."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from ductwork.errors import SessionRevokedError

HERE = Path(__file__).parent
ROUNDS = 8


def _send(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def _read(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


async def test_two_processes_refresh_the_same_token_exactly_one_wins(dw, url, tmp_path: Path):
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "refresh_proc.py"), url, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for _round in range(ROUNDS):
            started = await dw.sessions.start(
                "users", {"user_id": f"race-{uuid.uuid4().hex[:8]}", "plan": "pro"}
            )
            for proc in procs:
                _send(proc, started.refresh_token)
            for proc in procs:  # both connected and waiting: release them together
                assert _read(proc) == "ready"
            for proc in procs:
                _send(proc, "go")
            outcomes = sorted(_read(proc) for proc in procs)
            assert outcomes == ["RefreshReuseError", "ok"]
            # the loser presented a used token: the session is revoked, the winner's tokens too
            listed = await dw.sessions.list("users", active=False, limit=1000)
            mine = next(s for s in listed if s.session_id == started.session_id)
            assert mine.status == "revoked" and mine.revoked_reason == "reuse"
            with pytest.raises(SessionRevokedError):
                await dw.sessions.decrypt("users", started.token)
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()
            assert proc.wait(timeout=60) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
