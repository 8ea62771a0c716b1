"""A real moto S3 server on a free loopback port, for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ductwork.testing.servers import free_port, moto_server

ACCESS_KEY = "AKIATESTDUCTWORK"
SECRET_KEY = "s3-test-secret-never-printed"  # the tests check it never shows in a message


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """The session's moto server (authentication off)."""
    with moto_server() as server:
        yield server.url


@pytest.fixture
def moto_with_auth() -> Iterator[str]:
    """A moto server that checks credentials and knows no access key at all."""
    with moto_server(INITIAL_NO_AUTH_ACTION_COUNT="0") as server:
        yield server.url


@pytest.fixture
def closed_url() -> str:
    """A loopback URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def credentials() -> tuple[str, str]:
    """The access key id and secret the tests sign with."""
    return ACCESS_KEY, SECRET_KEY
