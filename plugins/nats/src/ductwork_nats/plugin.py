"""Entry point of ductwork-nats: registers its providers by import path."""

from __future__ import annotations

from ductwork import hookimpl
from ductwork.hookspecs import Register
from ductwork.providers import Broker


@hookimpl
def register_providers(register: Register) -> None:
    """Register :class:`ductwork_nats.broker.NATSBroker` as broker ``nats``."""
    register(
        Broker,
        "nats",
        "ductwork_nats.broker:NATSBroker",
        install='pip install "ductwork[nats]"',
    )
