"""Entry point of ductwork-smtp: registers its providers by import path."""

from __future__ import annotations

from ductwork import hookimpl
from ductwork.hookspecs import Register
from ductwork.providers import Notifier


@hookimpl
def register_providers(register: Register) -> None:
    """Register :class:`ductwork_smtp.notifier.SMTPNotifier` as notifier ``smtp``."""
    register(
        Notifier,
        "smtp",
        "ductwork_smtp.notifier:SMTPNotifier",
        install='pip install "ductwork[smtp]"',
    )
