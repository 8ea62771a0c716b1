"""The embedded providers, registered as a default plugin through the ordinary hook."""

from __future__ import annotations

from ductwork.hookspecs import Register, hookimpl
from ductwork.providers import Broker, Cache, Database, Graph, Notifier, Storage


@hookimpl
def register_providers(register: Register) -> None:
    """Register the embedded providers (the graph one needs ``ductwork[graph]``)."""
    register(Storage, "local", "ductwork.builtin.local:LocalStorage")
    register(Broker, "memory", "ductwork.builtin.memory_broker:MemoryBroker")
    register(Broker, "sqlite", "ductwork.builtin.sqlite_broker:SqliteBroker")
    register(Database, "sqlite", "ductwork.builtin.sqlite_database:SqliteDatabase")
    register(Cache, "memory", "ductwork.builtin.memory_cache:MemoryCache")
    register(Notifier, "mailbox", "ductwork.builtin.mailbox:MailboxNotifier")
    register(Notifier, "webhook", "ductwork.builtin.webhook:WebhookNotifier")
    register(
        Graph,
        "ladybug",
        "ductwork.builtin.ladybug_graph:LadybugGraph",
        install='pip install "ductwork[graph]"',
    )
