"""Entry point of ductwork-redis: registers its providers by import path."""

from __future__ import annotations

from ductwork import hookimpl
from ductwork.hookspecs import Register
from ductwork.providers import Broker, Cache

_INSTALL = 'pip install "ductwork[redis]"'


@hookimpl
def register_providers(register: Register) -> None:
    """Register the ``redis`` cache and the ``redis`` (Streams) broker."""
    register(Cache, "redis", "ductwork_redis.cache:RedisCache", install=_INSTALL)
    register(Broker, "redis", "ductwork_redis.broker:RedisBroker", install=_INSTALL)
