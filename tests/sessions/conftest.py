"""A product with a session tag, on SQLite (a file per test) and on the machine's Postgres."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ductwork.client import Ductwork

sys.path.insert(0, str(Path(__file__).parent))  # sessions_app, session_fns

from sessions_app import KEY_1, KEY_2, client, product


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_KEY_1", KEY_1)
    monkeypatch.setenv("SESSION_KEY_2", KEY_2)


@pytest.fixture
async def dw(url: str, tmp_path: Path) -> AsyncIterator[Ductwork]:
    async with client(product(url), tmp_path) as found:
        yield found
