"""A Tansu broker (Kafka protocol, in-memory storage) on a free loopback port, per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ductwork.testing.servers import kafka_broker


@pytest.fixture(scope="session")
def kafka_server() -> Iterator[str]:
    """Bootstrap address of a Tansu broker for the whole session."""
    with kafka_broker() as server:
        yield server.address


@pytest.fixture(scope="session")
def secured_kafka_server() -> Iterator[str]:
    """A Tansu broker that requires SASL authentication (and knows no user)."""
    with kafka_broker("--authentication") as server:
        yield server.address
