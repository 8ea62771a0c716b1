"""Step types: a registry, so new kinds (``quota``, ``fallback``) need no interpreter change.

A :class:`StepType` checks its target against the product at config load and turns a step
(target + rendered input + idempotency key) into a *job*: an executor kind of the jobs engine,
a target and the executor's data. Running a step calls that executor
(:mod:`ductwork.engine.executors`) — the same "run a target" path ``dispatch`` uses — and a
``dispatch`` step hands the very same job to ``dw.jobs.submit`` with a schedule. Types with
behaviour of their own (``sleep``, ``wait``, ``feature``, ``dispatch``) are handled by the
interpreter and declare ``special``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ductwork.engine.executors import plain, register_executor, split_target
from ductwork.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    from ductwork.client import Ductwork
    from ductwork.config.models import Product
    from ductwork.features.models import StepDef

__all__ = ["STEP_TYPES", "Job", "StepType", "register_step_type", "step_type"]

Job = tuple[str, str, dict[str, Any]]  # (executor kind, target, data)
Check = Callable[["StepDef", "Product"], "str | None"]
ToJob = Callable[["StepDef", str, Mapping[str, Any], str], Job]


@dataclass(frozen=True)
class StepType:
    """A kind of step: how its target is checked and which job runs it."""

    name: str
    check: Check
    to_job: ToJob | None = None
    special: bool = False  # run by the interpreter itself (sleep, wait, feature, dispatch)


STEP_TYPES: dict[str, StepType] = {}


def register_step_type(kind: StepType) -> None:
    """Add (or replace) a step type."""
    STEP_TYPES[kind.name] = kind


def step_type(name: str) -> StepType:
    """The registered type ``name``; :class:`NotFoundError` lists the known ones."""
    try:
        return STEP_TYPES[name]
    except KeyError:
        known = ", ".join(sorted(STEP_TYPES))
        raise NotFoundError(f"unknown step type {name!r} (types: {known})") from None


# -- target checks ---------------------------------------------------------------------------


def _pair(section: str, what: str, sub: str) -> Check:
    """A ``resource:name`` target whose resource is in ``section`` and name in ``sub``."""

    def check(spec: StepDef, product: Product) -> str | None:
        if not spec.target or ":" not in spec.target:
            return f"target must be '{what}'"
        tag, name = split_target(spec.target)
        resources = getattr(product, section)
        if tag not in resources:
            return f"unknown {section} resource {tag!r} in target {spec.target!r}"
        names = getattr(resources[tag], sub)
        if name not in names:
            return f"{section}.{tag} has no {sub[:-1] if sub != 'topics' else 'event'} {name!r}"
        return None

    return check


def _publish_check(spec: StepDef, product: Product) -> str | None:
    if not spec.target or ":" not in spec.target:
        return "target must be 'broker:event'"
    tag, event = split_target(spec.target)
    broker = product.brokers.get(tag)
    if broker is None:
        return f"unknown broker {tag!r} in target {spec.target!r}"
    if broker.topics and event not in broker.topics and event not in broker.topics.values():
        return f"broker {tag!r} has no event {event!r}"
    return None


def _tag(section: str, operations: tuple[str, ...]) -> Check:
    def check(spec: StepDef, product: Product) -> str | None:
        if not spec.target or spec.target not in getattr(product, section):
            return f"unknown {section} resource {spec.target!r}"
        if spec.operation not in operations:
            return f"operation must be one of {', '.join(operations)}"
        return None

    return check


def _feature_check(spec: StepDef, product: Product) -> str | None:
    return None if spec.target else "target must name a feature"


def _function_check(spec: StepDef, product: Product) -> str | None:
    return None if spec.target else "target must name a registered function"


def _sleep_check(spec: StepDef, product: Product) -> str | None:
    return None if spec.duration is not None else "a sleep step needs 'duration'"


def _no_target(spec: StepDef, product: Product) -> str | None:
    return None


def _dispatch_check(spec: StepDef, product: Product) -> str | None:
    if spec.of is None:
        return "a dispatch step needs 'of' (the step type to dispatch)"
    inner = STEP_TYPES.get(spec.of)
    if inner is None or inner.to_job is None:
        runnable = sorted(n for n, t in STEP_TYPES.items() if t.to_job is not None)
        return f"'of: {spec.of}' cannot be dispatched (one of: {', '.join(runnable)})"
    return inner.check(spec, product)


# -- jobs ------------------------------------------------------------------------------------


def _action_job(spec: StepDef, target: str, data: Mapping[str, Any], key: str) -> Job:
    return "actions.run", target, {"input": dict(data), "idempotency_key": key}


def _input_job(kind: str) -> ToJob:
    def job(spec: StepDef, target: str, data: Mapping[str, Any], key: str) -> Job:
        return kind, target, {"input": dict(data)}

    return job


def _publish_job(spec: StepDef, target: str, data: Mapping[str, Any], key: str) -> Job:
    headers = dict(data.get("headers") or {})
    message = data["message"] if "message" in data else dict(data)
    return (
        "events.publish",
        target,
        {"message": message, "key": data.get("key"), "headers": headers, "idempotency_key": key},
    )


def _notification_job(spec: StepDef, target: str, data: Mapping[str, Any], key: str) -> Job:
    if "to" not in data:
        raise ValidationError(f"notification step {spec.tag!r}: input needs 'to'")
    return "notifications.send", target, {**dict(data), "idempotency_key": key}


def _storage_job(spec: StepDef, target: str, data: Mapping[str, Any], key: str) -> Job:
    op = spec.operation or "read"
    out = dict(data)
    if op == "save":  # input {key, data: text or JSON data} or {key, b64}
        body = out.pop("data", None)
        if "b64" in out:
            raw = base64.b64decode(out.pop("b64"))
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = json.dumps(body).encode()
            out.setdefault("content_type", "application/json")
        out["data_b64"] = base64.b64encode(raw).decode()
    return f"storage.{op}", target, out


def _cache_job(spec: StepDef, target: str, data: Mapping[str, Any], key: str) -> Job:
    return f"caches.{spec.operation or 'get'}", target, dict(data)


def _feature_job(spec: StepDef, target: str, data: Mapping[str, Any], key: str) -> Job:
    return "feature", target, {"input": dict(data)}


def _function_job(spec: StepDef, target: str, data: Mapping[str, Any], key: str) -> Job:
    return "functions.call", target, {"input": dict(data), "idempotency_key": key}


# -- executors the types need beyond the engine's own ----------------------------------------


async def _storage_read(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    raw = await dw.storage.read_file(target, data["key"], env=env)
    try:
        return {"key": data["key"], "text": raw.decode()}
    except UnicodeDecodeError:
        return {"key": data["key"], "b64": base64.b64encode(raw).decode()}


async def _storage_delete(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    return {"deleted": await dw.storage.delete(target, data["key"], env=env)}


async def _cache_get(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    return await dw.caches.get(target, data["key"], default=data.get("default"), env=env)


async def _cache_set(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    extra = {"ttl": data["ttl"]} if "ttl" in data else {}
    await dw.caches.set(target, data["key"], data.get("value"), env=env, **extra)
    return None


async def _cache_delete(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    return {"deleted": await dw.caches.delete(target, data["key"], env=env)}


async def _function_call(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    from ductwork.features.functions import call_function

    key = data.get("idempotency_key")
    return plain(await call_function(target, data.get("input") or {}, idempotency_key=key))


def _register() -> None:
    for kind, fn in {
        "storage.read": _storage_read,
        "storage.delete": _storage_delete,
        "caches.get": _cache_get,
        "caches.set": _cache_set,
        "caches.delete": _cache_delete,
        "functions.call": _function_call,
    }.items():
        register_executor(kind, fn)
    for stype in (
        StepType("action", _pair("apps", "app:action", "actions"), _action_job),
        StepType(
            "database",
            _pair("databases", "database:action", "actions"),
            _input_job("databases.action"),
        ),
        StepType("graph", _pair("graphs", "graph:action", "actions"), _input_job("graphs.action")),
        StepType("publish", _publish_check, _publish_job),
        StepType(
            "notification",
            _pair("notifications", "notification:message", "messages"),
            _notification_job,
        ),
        StepType("storage", _tag("storage", ("save", "read", "delete")), _storage_job),
        StepType("cache", _tag("caches", ("get", "set", "delete")), _cache_job),
        StepType("function", _function_check, _function_job),
        StepType("feature", _feature_check, _feature_job, special=True),
        StepType("dispatch", _dispatch_check, special=True),
        StepType("sleep", _sleep_check, special=True),
        StepType("wait", _no_target, special=True),
    ):
        register_step_type(stype)
    from ductwork.resilience.steps import register  # quota, fallback: types of their own

    register()


_register()
