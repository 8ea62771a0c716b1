"""Provider interfaces: small async ABCs that backends implement."""

from ductwork.providers.base import Options, Provider, ProviderContext
from ductwork.providers.broker import Broker, Delivery, Message, Subscription
from ductwork.providers.cache import Cache, KeyPage
from ductwork.providers.database import Connection, Database, Result
from ductwork.providers.graph import Graph, GraphResult, GraphSession
from ductwork.providers.notifier import Attachment, Notification, Notifier, Receipt
from ductwork.providers.storage import ObjectInfo, Page, Storage, check_key, check_signed_url

__all__ = [
    "Attachment",
    "Broker",
    "Cache",
    "Connection",
    "Database",
    "Delivery",
    "Graph",
    "GraphResult",
    "GraphSession",
    "KeyPage",
    "Message",
    "Notification",
    "Notifier",
    "ObjectInfo",
    "Options",
    "Page",
    "Provider",
    "ProviderContext",
    "Receipt",
    "Result",
    "Storage",
    "Subscription",
    "check_key",
    "check_signed_url",
]

INTERFACES: dict[str, type[Provider]] = {
    cls.kind: cls for cls in (Storage, Broker, Database, Graph, Cache, Notifier)
}
