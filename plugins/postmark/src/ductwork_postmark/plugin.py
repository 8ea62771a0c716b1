"""Entry point of ductwork-postmark: registers its provider by import path."""

from __future__ import annotations

from ductwork import hookimpl
from ductwork.hookspecs import Register
from ductwork.providers import Notifier


@hookimpl
def register_providers(register: Register) -> None:
    """Register :class:`ductwork_postmark.notifier.PostmarkNotifier` as notifier ``postmark``."""
    register(
        Notifier,
        "postmark",
        "ductwork_postmark.notifier:PostmarkNotifier",
        install='pip install "ductwork[postmark]"',
    )
