"""ductwork: a self-hosted processor for product backends.

Resources (storage, brokers, databases, caches, notifiers) are declared by tag in
``ductwork.yaml`` with a provider per environment; application code calls them by tag::

    from ductwork import Ductwork

    async with Ductwork.from_config("ductwork.yaml", env="dev") as dw:
        await dw.storage.save("files", "hello.txt", b"hi")

Importing ``ductwork`` is cheap: the client, config and providers load on first use, and no
provider SDK is imported until config selects it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ductwork.errors import (
    AllProvidersFailedError,
    AuthenticationError,
    ConfigError,
    ConnectionFailedError,
    DecodeError,
    DuctworkError,
    FeatureFailedError,
    HTTPStatusError,
    InvalidKeyError,
    MissingDependencyError,
    NotFoundError,
    PluginError,
    ProviderError,
    RateLimitedError,
    ReferenceResolutionError,
    RefreshReuseError,
    SessionExpiredError,
    SessionInvalidError,
    SessionRevokedError,
    TooManyRowsError,
    UnknownProviderError,
    UnsupportedError,
    ValidationError,
    WebhookVerificationError,
)

if TYPE_CHECKING:
    from ductwork.client import Ductwork
    from ductwork.config.loader import Config
    from ductwork.features.code import feature
    from ductwork.features.functions import function
    from ductwork.hookspecs import hookimpl
    from ductwork.processor.events import Event
    from ductwork.sync import SyncDuctwork

__all__ = [
    "AllProvidersFailedError",
    "AuthenticationError",
    "Config",
    "ConfigError",
    "ConnectionFailedError",
    "DecodeError",
    "Ductwork",
    "DuctworkError",
    "Event",
    "FeatureFailedError",
    "HTTPStatusError",
    "InvalidKeyError",
    "MissingDependencyError",
    "NotFoundError",
    "PluginError",
    "ProviderError",
    "RateLimitedError",
    "ReferenceResolutionError",
    "RefreshReuseError",
    "SessionExpiredError",
    "SessionInvalidError",
    "SessionRevokedError",
    "SyncDuctwork",
    "TooManyRowsError",
    "UnknownProviderError",
    "UnsupportedError",
    "ValidationError",
    "WebhookVerificationError",
    "__version__",
    "feature",
    "function",
    "hookimpl",
]

__version__ = "0.1.0"

_LAZY = {
    "Config": "ductwork.config.loader",
    "Ductwork": "ductwork.client",
    "Event": "ductwork.processor.events",
    "SyncDuctwork": "ductwork.sync",
    "feature": "ductwork.features.code",
    "function": "ductwork.features.functions",
    "hookimpl": "ductwork.hookspecs",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ductwork' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
