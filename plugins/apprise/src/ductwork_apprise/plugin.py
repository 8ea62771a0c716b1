"""Entry point of ductwork-apprise: registers its provider by import path."""

from __future__ import annotations

from ductwork import hookimpl
from ductwork.hookspecs import Register
from ductwork.providers import Notifier


@hookimpl
def register_providers(register: Register) -> None:
    """Register :class:`ductwork_apprise.notifier.AppriseNotifier` as notifier ``apprise``."""
    register(
        Notifier,
        "apprise",
        "ductwork_apprise.notifier:AppriseNotifier",
        install='pip install "ductwork[apprise]"',
    )
