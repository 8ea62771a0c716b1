"""The plugin hook, and the markers plugins use.

A plugin is a module listed under the ``ductwork`` entry-point group::

    from ductwork import hookimpl
    from ductwork.providers import Storage

    @hookimpl
    def register_providers(register):
        register(Storage, "s3", "ductwork_s3.storage:S3Storage")

Providers are registered by import path: nothing heavy is imported until config selects one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pluggy

from ductwork.providers.base import Provider

__all__ = [
    "Register",
    "hookimpl",
    "hookspec",
    "register_features",
    "register_functions",
    "register_providers",
]

PROJECT = "ductwork"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Register(Protocol):
    """The callable handed to :func:`register_providers`."""

    def __call__(
        self,
        interface: type[Provider],
        name: str,
        path: str,
        *,
        install: str | None = None,
    ) -> None:
        """Register ``path`` (``"module:Class"``) as provider ``name`` of ``interface``.

        ``install`` is the command that installs what the provider imports, shown when that
        import fails (default: derived from the plugin's distribution).
        """


@hookspec
def register_providers(register: Register) -> None:
    """Register this plugin's providers by import path."""


@hookspec
def register_functions(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register Python callables by name: ``register("greet", greet)`` (``function`` steps)."""


@hookspec
def register_features(register: Callable[[Any], None]) -> None:
    """Register code-first features: ``register(onboard)`` for an ``@feature`` function."""
