"""A real GCS emulator (``gcp-storage-emulator``, in memory) on a free port, for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ductwork.testing.servers import free_port, gcs_emulator


@pytest.fixture(scope="session")
def gcs_url() -> Iterator[str]:
    """The session's emulator; stopped by its PID and waited for until it exits."""
    with gcs_emulator() as server:
        yield server.url


@pytest.fixture
def closed_url() -> str:
    """A loopback URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"
