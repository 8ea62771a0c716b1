"""The provider registry: a pluggy manager over the ``ductwork`` entry-point group.

Built by :func:`get_registry` on first use, never at import. The embedded providers are a
default plugin (:mod:`ductwork.builtin.plugin`) registered through the same hook as any other.
Set ``DUCTWORK_DISABLE_PLUGIN_AUTOLOAD=1`` to load only the default plugin (and those you add).
"""

from __future__ import annotations

import importlib
import os
import threading
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from ductwork import hookspecs
from ductwork._hints import did_you_mean
from ductwork.errors import (
    MissingDependencyError,
    PluginError,
    UnknownProviderError,
)
from ductwork.providers import INTERFACES, Provider

__all__ = ["PluginInfo", "ProviderEntry", "Registry", "get_registry", "reset_registry"]

ENTRY_POINT_GROUP = "ductwork"
DEFAULT_PLUGINS = ("ductwork.builtin.plugin",)
AUTOLOAD_ENV = "DUCTWORK_DISABLE_PLUGIN_AUTOLOAD"

# First-party providers that live in their own distributions, so that selecting one that is not
# installed names the extra to install (as fsspec's known_implementations does).
KNOWN_EXTRAS: dict[tuple[str, str], str] = {
    ("storage", "s3"): "s3",
    ("storage", "gcs"): "gcs",
    ("broker", "rabbitmq"): "rabbitmq",
    ("broker", "kafka"): "kafka",
    ("broker", "redis"): "redis",
    ("broker", "nats"): "nats",
    ("database", "postgres"): "sql",
    ("database", "mysql"): "sql",
    ("cache", "redis"): "redis",
    ("notifier", "smtp"): "smtp",
    ("graph", "falkordb"): "falkordb",
}


def install_hint(extra: str) -> str:
    """The command that installs ductwork's ``extra``."""
    return f'pip install "ductwork[{extra}]"'


@dataclass
class ProviderEntry:
    """A registered provider: where to import it from and who registered it."""

    kind: str
    name: str
    path: str
    plugin: str
    distribution: str | None = None
    version: str | None = None
    install: str | None = None


@dataclass
class PluginInfo:
    """A loaded (or failed) plugin."""

    name: str
    distribution: str | None
    version: str | None
    providers: list[ProviderEntry] = field(default_factory=list)
    error: str | None = None


class Registry:
    """Providers by (interface kind, name), loaded lazily by import path."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.entries: dict[tuple[str, str], ProviderEntry] = {}
        self._classes: dict[tuple[str, str], type[Provider]] = {}
        self._lock = threading.Lock()

    # -- loading ---------------------------------------------------------------------------

    def add_plugin(
        self,
        module: ModuleType | object,
        name: str,
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> PluginInfo:
        """Register a plugin object (usually a module) and collect its providers."""
        info = PluginInfo(name=name, distribution=distribution, version=version)
        self.plugins[name] = info
        self.manager.register(module, name=name)
        self.manager.check_pending()
        impl = self._impl_of(name)
        if impl is None:
            return info

        def register(
            interface: type[Provider], pname: str, path: str, *, install: str | None = None
        ) -> None:
            kind = getattr(interface, "kind", None)
            if kind not in INTERFACES or INTERFACES[kind] is not interface:
                raise PluginError(
                    f"plugin {name!r} registered {pname!r} for {interface!r}, which is not a "
                    f"ductwork interface ({', '.join(c.__name__ for c in INTERFACES.values())})"
                )
            if ":" not in path:
                raise PluginError(f"plugin {name!r}: provider path {path!r} must be 'module:Class'")
            entry = ProviderEntry(
                kind=kind,
                name=pname,
                path=path,
                plugin=name,
                distribution=distribution,
                version=version,
                install=install
                or (
                    install_hint(KNOWN_EXTRAS[(kind, pname)])
                    if (kind, pname) in KNOWN_EXTRAS
                    else (f"pip install {distribution}" if distribution else None)
                ),
            )
            self.entries[(kind, pname)] = entry
            info.providers.append(entry)

        try:
            impl(register=register)
        except Exception as exc:
            info.error = f"{type(exc).__name__}: {exc}"
            self.manager.unregister(name=name)
        return info

    def _impl_of(self, name: str) -> Any:
        plugin = self.manager.get_plugin(name)
        for impl in self.manager.hook.register_providers.get_hookimpls():
            if impl.plugin is plugin:
                return impl.function
        return None

    def load_defaults(self) -> None:
        """Register the built-in plugin(s)."""
        dist_version = _version("ductwork")
        for modname in DEFAULT_PLUGINS:
            self.add_plugin(
                importlib.import_module(modname),
                modname,
                distribution="ductwork",
                version=dist_version,
            )

    def load_entry_points(self) -> None:
        """Register every ``ductwork`` entry-point plugin; record the ones that fail."""
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in self.plugins:
                continue
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            try:
                module = ep.load()
            except Exception as exc:
                # A broken plugin is reported (plugins list, doctor) and does not stop the others.
                self.plugins[ep.name] = PluginInfo(
                    name=ep.name,
                    distribution=dist,
                    version=version,
                    error=f"{type(exc).__name__}: {exc}",
                )
                continue
            self.add_plugin(module, ep.name, distribution=dist, version=version)

    # -- lookup ----------------------------------------------------------------------------

    def names(self, kind: str) -> list[str]:
        """Registered provider names for an interface kind."""
        return sorted(n for (k, n) in self.entries if k == kind)

    def get(self, kind: str, name: str) -> type[Provider]:
        """The provider class, imported now; errors name what to install or what was meant."""
        with self._lock:
            cached = self._classes.get((kind, name))
        if cached is not None:
            return cached
        entry = self.entries.get((kind, name))
        if entry is None:
            raise self._unknown(kind, name)
        module_name, _, attr = entry.path.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            hint = entry.install or "install the plugin's dependencies"
            raise MissingDependencyError(
                f"{kind} provider {name!r} needs {exc.name or 'a module'!s}, which is not "
                f"installed: {hint}",
                install=entry.install,
            ) from exc
        cls = getattr(module, attr, None)
        if not (isinstance(cls, type) and issubclass(cls, INTERFACES[kind])):
            raise PluginError(
                f"plugin {entry.plugin!r}: {entry.path} is not a {INTERFACES[kind].__name__} class"
            )
        with self._lock:
            self._classes[(kind, name)] = cls
        return cls

    def entry_of(self, cls: type) -> ProviderEntry | None:
        """The entry a provider class was registered (and imported) under, if any."""
        with self._lock:
            keys = [key for key, found in self._classes.items() if found is cls]
        path = f"{cls.__module__}:{cls.__qualname__}"
        for key in keys:
            return self.entries[key]
        return next((e for e in self.entries.values() if e.path == path), None)

    def _unknown(self, kind: str, name: str) -> Exception:
        extra = KNOWN_EXTRAS.get((kind, name))
        if extra is not None:
            return MissingDependencyError(
                f"{kind} provider {name!r} comes from the ductwork-{extra} distribution, which "
                f"is not installed: {install_hint(extra)}",
                install=install_hint(extra),
            )
        candidates = self.names(kind) + [n for (k, n) in KNOWN_EXTRAS if k == kind]
        hint = did_you_mean(name, candidates, cutoff=0.5)
        available = ", ".join(sorted(set(candidates))) or "none"
        return UnknownProviderError(
            f"unknown {kind} provider {name!r}{hint} (available: {available})"
        )


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


_registry: Registry | None = None
_registry_lock = threading.Lock()


def get_registry() -> Registry:
    """The process-wide registry, built on first call."""
    global _registry
    with _registry_lock:
        if _registry is None:
            registry = Registry()
            registry.load_defaults()
            if not os.environ.get(AUTOLOAD_ENV):
                registry.load_entry_points()
            _registry = registry
        return _registry


def reset_registry() -> None:
    """Forget the registry so the next :func:`get_registry` rebuilds it (tests, plugin dev)."""
    global _registry
    with _registry_lock:
        _registry = None
