"""The ``ductwork`` command line."""

from ductwork.cli.app import main

__all__ = ["main"]
