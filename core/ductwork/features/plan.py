"""Declarative features compiled once, at config load: layers, step plans, expressions.

:func:`compile_features` checks every feature of the product and raises
:class:`~ductwork.errors.ConfigError` naming ``features.<feature>.<sequence>.<step>.<field>``
for: an unknown step type or target, an unknown parent, a cycle in parents, an expression that
does not parse or uses an undefined name, and a ``steps.<sequence>.<step>`` reference to a step
that does not run before (a sequence in an earlier layer, or earlier in the same sequence).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pydantic

from ductwork.engine.spec import RetryPolicy, parse_retries
from ductwork.errors import ConfigError, DuctworkError, ValidationError
from ductwork.expressions import Compiled, compile_value
from ductwork.features.types import STEP_TYPES, StepType

if TYPE_CHECKING:
    from ductwork.config.models import Product
    from ductwork.features.models import FeatureDef, StepDef

__all__ = ["NAMES", "FeaturePlan", "SequencePlan", "StepPlan", "compile_features"]

NAMES = ("input", "steps", "env", "product", "session")
# what features retry by default: crash recoveries (a failed step fails the run at once)
RUN_RETRY = RetryPolicy(
    max_retries=10, backoff=0.5, cap=30.0, non_retryable=("FeatureFailedError",)
)


@dataclass(frozen=True)
class StepPlan:
    """One step, ready to run: its key, type and compiled mappings."""

    key: str
    sequence: str
    spec: StepDef
    kind: StepType
    input: Compiled
    condition: Compiled | None
    output: Compiled | None
    retry: RetryPolicy


@dataclass(frozen=True)
class SequencePlan:
    """A sequence's steps in order, and its layer."""

    tag: str
    layer: int
    steps: tuple[StepPlan, ...]


@dataclass(frozen=True)
class FeaturePlan:
    """A compiled declarative feature."""

    tag: str
    definition: FeatureDef
    layers: tuple[tuple[SequencePlan, ...], ...]
    output: Compiled | None
    input_model: type[pydantic.BaseModel]
    retry: RetryPolicy

    def step_keys(self) -> list[str]:
        """Every step key in plan order (layer, sequence, step)."""
        return [s.key for layer in self.layers for seq in layer for s in seq.steps]

    def validate_input(self, data: Any) -> dict[str, Any]:
        """``data`` checked against the input schema; :class:`ValidationError` otherwise."""
        if not isinstance(data, Mapping):
            raise ValidationError(f"feature {self.tag!r}: input must be a mapping")
        try:
            validated = self.input_model.model_validate(dict(data))
        except pydantic.ValidationError as exc:
            from ductwork.processor._actions import problems

            raise ValidationError(
                f"feature {self.tag!r}: input does not match its schema "
                f"({', '.join(f'{k}: {v}' for k, v in self.definition.input.items()) or 'none'})"
                f": {problems(exc)}; nothing was stored"
            ) from None
        return dict(validated.model_dump(mode="json"))


def _layers(tag: str, feature: FeatureDef) -> dict[str, int]:
    parents = {s.tag: list(s.parents) for s in feature.sequences}
    for seq, ps in parents.items():
        for p in ps:
            if p not in parents:
                raise ConfigError(
                    f"unknown parent {p!r} (sequences: {', '.join(parents)})",
                    path=f"features.{tag}.{seq}.parents",
                )
    layer: dict[str, int] = {}

    def visit(seq: str, trail: tuple[str, ...]) -> int:
        if seq in trail:
            cycle = " -> ".join((*trail[trail.index(seq) :], seq))
            raise ConfigError(f"a cycle in parents: {cycle}", path=f"features.{tag}.{seq}.parents")
        if seq not in layer:
            layer[seq] = 1 + max((visit(p, (*trail, seq)) for p in parents[seq]), default=-1)
        return layer[seq]

    for seq in parents:
        visit(seq, ())
    return layer


def _compile_step(
    tag: str, seq: str, spec: StepDef, product: Product, names: tuple[str, ...]
) -> StepPlan:
    where = f"features.{tag}.{seq}.{spec.tag}"
    kind = STEP_TYPES.get(spec.type)
    if kind is None:
        raise ConfigError(
            f"unknown step type {spec.type!r} (types: {', '.join(sorted(STEP_TYPES))})",
            path=f"{where}.type",
        )
    problem = kind.check(spec, product)
    if problem is None and spec.type == "feature" and spec.target == tag:
        problem = "a feature cannot run itself as a step"
    if problem is not None:
        raise ConfigError(problem, path=f"{where}.target")
    if spec.cache is not None and spec.cache.tag not in product.caches:
        raise ConfigError(f"unknown cache {spec.cache.tag!r}", path=f"{where}.cache.tag")
    try:
        retry = RetryPolicy(max_retries=0) if spec.retries is None else parse_retries(spec.retries)
    except DuctworkError as exc:
        raise ConfigError(str(exc), path=f"{where}.retries") from None
    compiled_input = compile_value(spec.input, names=names, where=f"{where}.input")
    condition = (
        None
        if spec.condition is None
        else compile_value(
            spec.condition if "{{" in spec.condition else f"{{{{ {spec.condition} }}}}",
            names=names,
            where=f"{where}.condition",
        )
    )
    output = (
        None
        if spec.output is None
        else compile_value(spec.output, names=(*names, "result"), where=f"{where}.output")
    )
    return StepPlan(f"{seq}/{spec.tag}", seq, spec, kind, compiled_input, condition, output, retry)


def _check_refs(
    tag: str, plan: StepPlan, layer: Mapping[str, int], before: set[str], known: set[str]
) -> None:
    where = f"features.{tag}.{plan.sequence}.{plan.spec.tag}"
    for field, compiled in (
        ("input", plan.input),
        ("condition", plan.condition),
        ("output", plan.output),
    ):
        if compiled is None:
            continue
        for seq, step in sorted(compiled.references):
            ref = f"{seq}/{step}"
            if ref not in known:
                raise ConfigError(
                    f"steps.{seq}.{step} is not a step of this feature", path=f"{where}.{field}"
                )
            earlier = layer[seq] < layer[plan.sequence] or (seq == plan.sequence and ref in before)
            if not earlier:
                raise ConfigError(
                    f"steps.{seq}.{step} does not run before this step (only sequences of an "
                    "earlier layer — list them in 'parents' — or earlier steps of this "
                    "sequence can be read)",
                    path=f"{where}.{field}",
                )


def compile_feature(tag: str, feature: FeatureDef, product: Product) -> FeaturePlan:
    """Check and compile one feature."""
    from ductwork.processor._actions import _input_model

    layer = _layers(tag, feature)
    known = {f"{s.tag}/{st.tag}" for s in feature.sequences for st in s.steps}
    sequences: list[SequencePlan] = []
    for seq in feature.sequences:
        steps: list[StepPlan] = []
        before: set[str] = set()
        for spec in seq.steps:
            plan = _compile_step(tag, seq.tag, spec, product, NAMES)
            _check_refs(tag, plan, layer, before, known)
            steps.append(plan)
            before.add(plan.key)
        sequences.append(SequencePlan(seq.tag, layer[seq.tag], tuple(steps)))
    depth = max(layer.values()) + 1
    layers = tuple(tuple(s for s in sequences if s.layer == i) for i in range(depth))
    output = (
        None
        if feature.output is None
        else compile_value(feature.output, names=NAMES, where=f"features.{tag}.output")
    )
    for ref_seq, ref_step in sorted(output.references if output else ()):
        if f"{ref_seq}/{ref_step}" not in known:
            raise ConfigError(
                f"steps.{ref_seq}.{ref_step} is not a step of this feature",
                path=f"features.{tag}.output",
            )
    try:
        retry = RUN_RETRY if feature.retries is None else parse_retries(feature.retries)
    except DuctworkError as exc:
        raise ConfigError(str(exc), path=f"features.{tag}.retries") from None
    if "FeatureFailedError" not in retry.non_retryable:
        retry = RetryPolicy(
            retry.max_retries,
            retry.backoff,
            retry.cap,
            (*retry.non_retryable, "FeatureFailedError"),
        )
    model = _input_model(f"feature_{tag}", feature.input)
    return FeaturePlan(tag, feature, layers, output, model, retry)


def compile_features(product: Product) -> dict[str, FeaturePlan]:
    """Every feature of ``product``, compiled; the first problem raises :class:`ConfigError`."""
    plans: dict[str, FeaturePlan] = {}
    for tag, feature in product.features.items():
        plans[tag] = compile_feature(tag, feature, product)
    return plans
