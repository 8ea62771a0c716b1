"""Entry point of ductwork-s3: registers its providers by import path."""

from __future__ import annotations

from ductwork import hookimpl
from ductwork.hookspecs import Register
from ductwork.providers import Storage


@hookimpl
def register_providers(register: Register) -> None:
    """Register :class:`ductwork_s3.storage.S3Storage` as storage provider ``s3``."""
    register(Storage, "s3", "ductwork_s3.storage:S3Storage")
