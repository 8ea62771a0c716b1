"""The plugin registry: one hook for built-ins and plugins, lazy imports, clear failures."""

from __future__ import annotations

import sys
import types

import pytest
from ductwork import MissingDependencyError, PluginError, UnknownProviderError, hookimpl
from ductwork.plugins import Registry, get_registry
from ductwork.providers import Cache, Storage


def test_builtins_register_through_the_hook():
    registry = Registry()
    registry.load_defaults()
    info = registry.plugins["ductwork.builtin.plugin"]
    assert {f"{p.kind}:{p.name}" for p in info.providers} == {
        "storage:local",
        "broker:memory",
        "broker:sqlite",
        "database:sqlite",
        "cache:memory",
        "notifier:mailbox",
        "notifier:webhook",
        "graph:ladybug",
    }


def test_entry_point_plugins_are_discovered():
    registry = get_registry()
    assert registry.entries[("cache", "dbm")].distribution == "ductwork-dbm"


def test_registration_is_lazy_until_a_provider_is_asked_for():
    module = types.ModuleType("lazy_plugin")

    @hookimpl
    def register_providers(register):
        register(Storage, "lazy", "lazy_provider_module_xyz:LazyStorage")

    module.register_providers = register_providers  # type: ignore[attr-defined]
    registry = Registry()
    registry.add_plugin(module, "lazy")
    assert "lazy_provider_module_xyz" not in sys.modules
    assert registry.names("storage") == ["lazy"]
    with pytest.raises(MissingDependencyError, match="lazy_provider_module_xyz"):
        registry.get("storage", "lazy")


def test_a_plugin_that_fails_to_register_is_reported_and_others_work():
    bad = types.ModuleType("bad_plugin")

    @hookimpl
    def register_providers(register):
        register(object, "nope", "x:Y")

    bad.register_providers = register_providers  # type: ignore[attr-defined]
    registry = Registry()
    registry.load_defaults()
    info = registry.add_plugin(bad, "bad")
    assert info.error is not None and "not a ductwork interface" in info.error
    assert registry.get("cache", "memory").__name__ == "MemoryCache"


def test_a_misspelled_hook_fails_loudly():
    module = types.ModuleType("typo_plugin")

    @hookimpl
    def register_provider(register):  # missing the final s
        pass

    module.register_provider = register_provider  # type: ignore[attr-defined]
    registry = Registry()
    with pytest.raises(Exception, match="register_provider"):
        registry.add_plugin(module, "typo")


def test_a_path_to_a_non_provider_is_a_plugin_error():
    module = types.ModuleType("wrong_class_plugin")

    @hookimpl
    def register_providers(register):
        register(Cache, "wrong", "ductwork.builtin.local:LocalStorage")

    module.register_providers = register_providers  # type: ignore[attr-defined]
    registry = Registry()
    registry.add_plugin(module, "wrong")
    with pytest.raises(PluginError, match="is not a Cache class"):
        registry.get("cache", "wrong")


def test_unknown_names_suggest_and_list():
    with pytest.raises(UnknownProviderError, match="did you mean 'sqlite'") as info:
        get_registry().get("database", "sqlit")
    assert "available:" in str(info.value)


def test_autoload_can_be_switched_off(monkeypatch):
    from ductwork import plugins

    monkeypatch.setenv(plugins.AUTOLOAD_ENV, "1")
    plugins.reset_registry()
    try:
        assert ("cache", "dbm") not in plugins.get_registry().entries
        assert ("cache", "memory") in plugins.get_registry().entries
    finally:
        monkeypatch.delenv(plugins.AUTOLOAD_ENV)
        plugins.reset_registry()


def test_a_plugin_that_fails_to_import_is_reported_and_does_not_break_others(monkeypatch):
    from importlib import metadata

    from ductwork import plugins

    broken = metadata.EntryPoint(name="broken", value="no_such_module_qq.plugin", group="ductwork")
    real = metadata.entry_points

    def entry_points(**kwargs):
        return [*real(**kwargs), broken]

    monkeypatch.setattr(plugins.metadata, "entry_points", entry_points)
    registry = Registry()
    registry.load_defaults()
    registry.load_entry_points()
    assert "ModuleNotFoundError" in (registry.plugins["broken"].error or "")
    assert registry.get("cache", "dbm").__name__ == "DbmCache"
    assert registry.get("storage", "local").__name__ == "LocalStorage"
