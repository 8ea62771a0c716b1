"""Entry point of ductwork-fcm: registers its provider by import path."""

from __future__ import annotations

from ductwork import hookimpl
from ductwork.hookspecs import Register
from ductwork.providers import Notifier


@hookimpl
def register_providers(register: Register) -> None:
    """Register :class:`ductwork_fcm.notifier.FCMNotifier` as notifier ``fcm``."""
    register(
        Notifier,
        "fcm",
        "ductwork_fcm.notifier:FCMNotifier",
        install='pip install "ductwork[fcm]"',
    )
