"""Entry point of ductwork-rabbitmq: registers its providers by import path."""

from __future__ import annotations

from ductwork import hookimpl
from ductwork.hookspecs import Register
from ductwork.providers import Broker


@hookimpl
def register_providers(register: Register) -> None:
    """Register the ``rabbitmq`` broker (aio-pika is imported only when config selects it)."""
    register(Broker, "rabbitmq", "ductwork_rabbitmq.broker:RabbitMQBroker")
