"""Entry point of ductwork-gcs: registers its providers by import path."""

from __future__ import annotations

from ductwork import hookimpl
from ductwork.hookspecs import Register
from ductwork.providers import Storage


@hookimpl
def register_providers(register: Register) -> None:
    """Register :class:`ductwork_gcs.storage.GCSStorage` as storage provider ``gcs``."""
    register(Storage, "gcs", "ductwork_gcs.storage:GCSStorage")
