"""Entry point of ductwork-expo: registers its provider by import path."""

from __future__ import annotations

from ductwork import hookimpl
from ductwork.hookspecs import Register
from ductwork.providers import Notifier


@hookimpl
def register_providers(register: Register) -> None:
    """Register :class:`ductwork_expo.notifier.ExpoNotifier` as notifier ``expo``."""
    register(
        Notifier,
        "expo",
        "ductwork_expo.notifier:ExpoNotifier",
        install='pip install "ductwork[expo]"',
    )
