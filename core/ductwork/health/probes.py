"""Probe kinds: what a healthcheck calls, checked against the product at config load.

A probe is one mapping with one kind key and an optional ``input``::

    {action: "app:action"}          # an app's action, one attempt (no retries)
    {database: "main"}              # the database provider's ping
    {database: "main:action"}       # a database action
    {publish: "bus:event"}          # a broker publish (message: input, or {"probe": target})
    {storage: "files"}              # a storage list (one key at most)
    {feature: "tag"}                # a feature run, to its end

A kind is a registration (:func:`register_probe_kind`), not an ``if`` chain: each declares how
its target is checked against the product and how it is run through the client, the same paths
the namespaces and the jobs engine use. Targets of the ``action``, ``database:action``,
``publish`` and ``feature`` kinds are checked by the feature step types' own checks.

:func:`compile_healthchecks` refuses, with a :class:`~ductwork.errors.ConfigError` naming
``healthchecks.<tag>.<field>``: an unknown probe kind, an unknown target, an alert whose
notification message or event is not declared, a notification alert without ``to``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ductwork.errors import ConfigError

if TYPE_CHECKING:
    from ductwork.client import Ductwork
    from ductwork.config.models import Product
    from ductwork.health.models import HealthcheckDef

__all__ = [
    "PROBE_KINDS",
    "ProbeKind",
    "ProbeResult",
    "compile_healthchecks",
    "probe_of",
    "register_probe_kind",
    "run_probe",
]

Check = Callable[[str, "Product"], "str | None"]
Run = Callable[["Ductwork", str, dict[str, Any], str], Awaitable[Any]]
_ERROR_MAX = 500  # characters of a failed probe's error kept in the state


@dataclass(frozen=True)
class ProbeKind:
    """A kind of probe: how its target is checked, how it is run, what to open beforehand.

    ``prepare`` (optional) opens what the call needs (the provider, the app's client): its
    first time costs imports and connections, which are not the provider's latency, so it is
    bounded by the timeout on its own and not timed.
    """

    name: str
    check: Check
    run: Run
    prepare: Run | None = None


@dataclass(frozen=True)
class ProbeResult:
    """One probe's outcome: whether it answered in time, how long it took, what went wrong."""

    ok: bool
    latency: float
    error: str | None = None


PROBE_KINDS: dict[str, ProbeKind] = {}


def register_probe_kind(kind: ProbeKind) -> None:
    """Add (or replace) a probe kind."""
    PROBE_KINDS[kind.name] = kind


def probe_of(probe: Mapping[str, Any]) -> tuple[ProbeKind, str, dict[str, Any]]:
    """The probe's kind, target and input; :class:`ValueError` says what is wrong."""
    kinds = [key for key in probe if key != "input"]
    known = ", ".join(sorted(PROBE_KINDS))
    if len(kinds) != 1:
        raise ValueError(f"a probe names exactly one kind ({known}), and optionally 'input'")
    kind = PROBE_KINDS.get(kinds[0])
    if kind is None:
        raise ValueError(f"unknown probe kind {kinds[0]!r} (kinds: {known})")
    target = probe[kinds[0]]
    if not isinstance(target, str) or not target:
        raise ValueError(f"the {kind.name} probe's target must be a non-empty string")
    data = probe.get("input") or {}
    if not isinstance(data, Mapping):
        raise ValueError("a probe's input must be a mapping")
    return kind, target, dict(data)


async def run_probe(dw: Ductwork, defn: HealthcheckDef, env: str) -> ProbeResult:
    """Run ``defn``'s probe once in ``env``, bounded by its timeout; never raises for a failure."""
    kind, target, data = probe_of(defn.probe)
    started = time.perf_counter()
    try:
        if kind.prepare is not None:
            await asyncio.wait_for(kind.prepare(dw, target, data, env), defn.timeout)
            started = time.perf_counter()
        await asyncio.wait_for(kind.run(dw, target, data, env), defn.timeout)
    except TimeoutError:
        return ProbeResult(False, defn.timeout, f"no answer within {defn.timeout:g}s")
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:_ERROR_MAX]
        return ProbeResult(False, time.perf_counter() - started, error)
    return ProbeResult(True, time.perf_counter() - started)


# -- checks ----------------------------------------------------------------------------------


def _step_check(step_type: str) -> Check:
    """The feature step type's own target check (one way to name a target)."""

    def check(target: str, product: Product) -> str | None:
        from ductwork.features.models import StepDef
        from ductwork.features.types import step_type as lookup

        return lookup(step_type).check(StepDef(tag="probe", type=step_type, target=target), product)

    return check


def _database_check(target: str, product: Product) -> str | None:
    if ":" in target:
        return _step_check("database")(target, product)
    return None if target in product.databases else f"unknown databases resource {target!r}"


def _storage_check(target: str, product: Product) -> str | None:
    return None if target in product.storage else f"unknown storage resource {target!r}"


def _feature_check(target: str, product: Product) -> str | None:
    # declarative features are known at load; code-first ones register later (modules:)
    if target in product.features or product.modules:
        return None
    return f"unknown feature {target!r}"


# -- runs ------------------------------------------------------------------------------------


def _opens(section: str) -> Run:
    """Open the provider of the target's resource (``tag`` or ``tag:name``)."""

    async def prepare(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
        return await dw.provider(section, target.partition(":")[0], env)

    return prepare


async def _app_client(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    return await dw.actions.client(target.partition(":")[0], env)


async def _action(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    app, _, action = target.partition(":")
    # one attempt: the thresholds (failures, successes) smooth flapping, not the app's retries
    return await dw.actions.run(app, action, data, env=env, retries=0)


async def _database(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    database, _, action = target.partition(":")
    if action:
        return await dw.databases.action.execute(database, action, data, env=env)
    await (await dw.provider("databases", database, env)).ping()
    return None


async def _publish(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    broker, _, event = target.partition(":")
    return await dw.events.publish(broker, event, data or {"probe": target}, env=env)


async def _storage(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    return await dw.storage.list(target, str(data.get("prefix", "")), limit=1, env=env)


async def _feature(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    return await dw.features.run(target, data, env=env)


for _kind in (
    ProbeKind("action", _step_check("action"), _action, _app_client),
    ProbeKind("database", _database_check, _database, _opens("databases")),
    ProbeKind("publish", _step_check("publish"), _publish, _opens("brokers")),
    ProbeKind("storage", _storage_check, _storage, _opens("storage")),
    ProbeKind("feature", _feature_check, _feature),
):
    register_probe_kind(_kind)


# -- config load -----------------------------------------------------------------------------


def compile_healthchecks(product: Product) -> None:
    """Check every healthcheck's probe and alert against the product (see the module doc)."""
    for tag, defn in product.healthchecks.items():
        where = f"healthchecks.{tag}"
        try:
            kind, target, _ = probe_of(defn.probe)
        except ValueError as exc:
            raise ConfigError(str(exc), path=f"{where}.probe") from None
        problem = kind.check(target, product)
        if problem is not None:
            raise ConfigError(problem, path=f"{where}.probe.{kind.name}")
        alert = defn.alert
        if alert is None:
            continue
        if alert.notification is None and alert.event is None:
            raise ConfigError(
                "an alert names a notification, an event, or both", path=f"{where}.alert"
            )
        if alert.notification is not None:
            problem = _step_check("notification")(alert.notification, product)
            if problem is not None:
                raise ConfigError(problem, path=f"{where}.alert.notification")
            if not alert.to:
                raise ConfigError("a notification alert needs 'to'", path=f"{where}.alert.to")
        if alert.event is not None:
            problem = _step_check("publish")(alert.event, product)
            if problem is not None:
                raise ConfigError(problem, path=f"{where}.alert.event")
