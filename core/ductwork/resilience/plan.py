"""Quotas, fallbacks and usage limits compiled once, at config load.

:func:`compile_resilience` checks every quota and fallback of the product (and the ``limits``
of app actions) and raises :class:`~ductwork.errors.ConfigError` naming
``quotas.<tag>.providers.<name>.<field>`` for: no providers, a weight that is not a positive
number, a target that does not exist (or could be several kinds: set ``type``), a healthcheck
or cache that is not declared, and a mapping that does not parse or uses an undefined name.
Targets are checked and run through the feature step types (:mod:`ductwork.features.types`),
so a provider reaches its target exactly as a feature step does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pydantic

from ductwork.engine.executors import split_target
from ductwork.errors import ConfigError, ValidationError
from ductwork.expressions import Compiled, compile_value
from ductwork.features.models import StepDef
from ductwork.resilience.models import BreakerDef, FallbackDef, QuotaDef, QuotaProvider, UsageLimit

if TYPE_CHECKING:
    from ductwork.config.models import Product
    from ductwork.resilience.models import FallbackProvider

__all__ = [
    "NAMES",
    "GroupPlan",
    "LimitPlan",
    "ProviderPlan",
    "ResiliencePlans",
    "compile_limit",
    "compile_resilience",
]

NAMES = ("input", "env", "product")
OUTPUT_NAMES = (*NAMES, "result")
#: the step types a provider may be: calls that answer (not storage/cache/publish operations)
PROVIDER_TYPES = ("action", "database", "graph", "notification", "feature", "function")


@dataclass(frozen=True)
class LimitPlan:
    """A usage limit, its key expression compiled."""

    where: str  # "quotas.sms.limits"
    key: Compiled
    spec: UsageLimit


@dataclass(frozen=True)
class ProviderPlan:
    """One provider, ready to call: its step (type + target) and compiled mappings."""

    name: str
    step: StepDef
    input: Compiled | None
    output: Compiled | None
    retries: int
    timeout: float | None
    healthcheck: str | None
    breaker: BreakerDef | None
    weight: float = 1.0

    @property
    def target(self) -> str:
        """The target called (``app:action``, ``database:action``, a feature…)."""
        return self.step.target or ""


@dataclass(frozen=True)
class GroupPlan:
    """A compiled quota or fallback."""

    section: str  # "quotas" or "fallbacks"
    tag: str
    providers: tuple[ProviderPlan, ...]
    input_model: type[pydantic.BaseModel] | None
    limit: LimitPlan | None

    @cached_property
    def healthchecks(self) -> list[str]:
        """The healthchecks its providers name, each once."""
        return sorted({p.healthcheck for p in self.providers if p.healthcheck is not None})

    def validate_input(self, data: Any) -> dict[str, Any]:
        """``data`` checked against the declared input (any mapping when none is declared)."""
        what = f"{self.section[:-1]} {self.tag!r}"
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ValidationError(f"{what}: input must be a mapping")
        if self.input_model is None:
            return dict(data)
        from ductwork.processor._actions import problems

        try:
            validated = self.input_model.model_validate(dict(data))
        except pydantic.ValidationError as exc:
            raise ValidationError(
                f"{what}: input does not match its schema: {problems(exc)}"
            ) from None
        return dict(validated.model_dump(mode="json"))


@dataclass(frozen=True)
class ResiliencePlans:
    """Every compiled quota, fallback and action limit of a product."""

    quotas: dict[str, GroupPlan]
    fallbacks: dict[str, GroupPlan]
    action_limits: dict[tuple[str, str], LimitPlan]


def _kinds(target: str, product: Product) -> list[str]:
    """The step types ``target`` names an existing thing of."""
    if ":" not in target:
        return ["feature"] if target in product.features else []
    tag, name = split_target(target)
    found = []
    for kind, section, sub in (
        ("action", "apps", "actions"),
        ("database", "databases", "actions"),
        ("graph", "graphs", "actions"),
        ("notification", "notifications", "messages"),
    ):
        resource = getattr(product, section).get(tag)
        if resource is not None and name in getattr(resource, sub):
            found.append(kind)
    return found


def _step(where: str, provider: FallbackProvider, product: Product) -> StepDef:
    from ductwork.features.types import STEP_TYPES

    kind = provider.type
    if kind is None:
        kinds = _kinds(provider.target, product)
        if not kinds:
            raise ConfigError(
                f"target {provider.target!r} does not exist (no app action, database action, "
                "graph action or notification message 'resource:name', nor a feature of that "
                "name); set 'type' for another kind of target",
                path=f"{where}.target",
            )
        if len(kinds) > 1:
            raise ConfigError(
                f"target {provider.target!r} names a {' and a '.join(kinds)}: set 'type' to "
                "say which",
                path=f"{where}.target",
            )
        kind = kinds[0]
    found = STEP_TYPES.get(kind)
    callable_types = [n for n in PROVIDER_TYPES if n in STEP_TYPES]
    if found is None or kind not in callable_types:
        raise ConfigError(
            f"type {kind!r} cannot be a provider (one of: {', '.join(callable_types)})",
            path=f"{where}.type",
        )
    step = StepDef(tag=provider.name, type=kind, target=provider.target)
    problem = found.check(step, product)
    if problem is None and kind == "feature" and provider.target not in product.features:
        problem = f"no feature {provider.target!r}"
    if problem is not None:
        raise ConfigError(problem, path=f"{where}.target")
    return step


def _breaker(value: BreakerDef | bool | None, where: str, product: Product) -> BreakerDef | None:
    if value is None or value is False:
        return None
    breaker = BreakerDef() if value is True else value
    if breaker.cache is not None and breaker.cache not in product.caches:
        raise ConfigError(f"no cache {breaker.cache!r}", path=f"{where}.cache")
    return breaker


def compile_limit(limit: UsageLimit, where: str, product: Product) -> LimitPlan:
    """A usage limit checked (its cache exists) and its key compiled."""
    if limit.cache is not None and limit.cache not in product.caches:
        raise ConfigError(
            f"no cache {limit.cache!r} (caches: {', '.join(sorted(product.caches)) or 'none'})",
            path=f"{where}.cache",
        )
    return LimitPlan(where, compile_value(limit.key, names=NAMES, where=f"{where}.key"), limit)


def _provider(
    where: str, provider: FallbackProvider, group: FallbackDef | QuotaDef, product: Product
) -> ProviderPlan:
    step = _step(where, provider, product)
    weight = 1.0
    if isinstance(provider, QuotaProvider):
        weight = provider.weight
        if isinstance(weight, bool) or not math.isfinite(weight) or weight <= 0:
            raise ConfigError(
                f"weight must be a positive number, not {weight!r}", path=f"{where}.weight"
            )
    healthcheck = provider.healthcheck or group.healthcheck
    if healthcheck is not None and healthcheck not in product.healthchecks:
        known = ", ".join(sorted(product.healthchecks)) or "none declared"
        field = "healthcheck" if provider.healthcheck else "(the group's) healthcheck"
        raise ConfigError(
            f"no healthcheck {healthcheck!r} (healthchecks: {known})", path=f"{where}.{field}"
        )
    breaker = _breaker(
        group.breaker if provider.breaker is None else provider.breaker, f"{where}.breaker", product
    )
    mapped_in = (
        None
        if provider.input is None
        else compile_value(provider.input, names=NAMES, where=f"{where}.input")
    )
    mapped_out = (
        None
        if provider.output is None
        else compile_value(provider.output, names=OUTPUT_NAMES, where=f"{where}.output")
    )
    return ProviderPlan(
        provider.name,
        step,
        mapped_in,
        mapped_out,
        provider.retries,
        provider.timeout,
        healthcheck,
        breaker,
        weight,
    )


def _group(section: str, tag: str, group: FallbackDef | QuotaDef, product: Product) -> GroupPlan:
    from ductwork.processor._actions import _input_model

    where = f"{section}.{tag}"
    if not group.providers:
        raise ConfigError("no providers: list at least one", path=f"{where}.providers")
    if group.breaker is not True and group.breaker is not False:
        _breaker(group.breaker, f"{where}.breaker", product)
    providers = tuple(
        _provider(f"{where}.providers.{p.name}", p, group, product) for p in group.providers
    )
    model = _input_model(f"{section}_{tag}", group.input) if group.input else None
    limits = group.limits
    limit = None if limits is None else compile_limit(limits, f"{where}.limits", product)
    return GroupPlan(section, tag, providers, model, limit)


def compile_resilience(product: Product) -> ResiliencePlans:
    """Every quota, fallback and action limit of ``product``; the first problem raises."""
    quotas = {tag: _group("quotas", tag, q, product) for tag, q in product.quotas.items()}
    fallbacks = {tag: _group("fallbacks", tag, f, product) for tag, f in product.fallbacks.items()}
    limits = {
        (app, name): compile_limit(action.limits, f"apps.{app}.actions.{name}.limits", product)
        for app, resource in product.apps.items()
        for name, action in resource.actions.items()
        if action.limits is not None
    }
    return ResiliencePlans(quotas, fallbacks, limits)
