"""Entry point of ductwork-kafka: registers its providers by import path."""

from __future__ import annotations

from ductwork import hookimpl
from ductwork.hookspecs import Register
from ductwork.providers import Broker


@hookimpl
def register_providers(register: Register) -> None:
    """Register :class:`ductwork_kafka.broker.KafkaBroker` as broker provider ``kafka``."""
    register(
        Broker,
        "kafka",
        "ductwork_kafka.broker:KafkaBroker",
        install='pip install "ductwork[kafka]"',
    )
