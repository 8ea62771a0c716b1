"""Entry point of the ``dbm`` plugin: registers the provider by import path."""

from __future__ import annotations

from ductwork import hookimpl
from ductwork.hookspecs import Register
from ductwork.providers import Cache


@hookimpl
def register_providers(register: Register) -> None:
    """Register :class:`ductwork_dbm.cache.DbmCache` as cache provider ``dbm``."""
    register(Cache, "dbm", "ductwork_dbm.cache:DbmCache", install="pip install ductwork-dbm")
