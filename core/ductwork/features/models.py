"""The ``features:`` section of ``ductwork.yaml``, as pydantic models.

A feature has an input schema, sequences of steps and an output mapping::

    features:
      signup:
        input: {email: str, name: str}
        sequences:
          - tag: create
            steps:
              - {tag: insert, type: database, target: "main:insert_user",
                 input: {email: "{{ input.email }}"}}
          - tag: greet
            parents: [create]
            steps:
              - {tag: email, type: notification, target: "mail:welcome",
                 input: {to: "{{ input.email }}", data: {name: "{{ input.name }}"}}}
        output: {user: "{{ steps.create.insert.output }}"}

Structure is checked here; targets, layers and expressions are checked by
:func:`ductwork.features.plan.compile_features` when the product loads.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ductwork.config.durations import Duration

__all__ = ["FeatureDef", "SequenceDef", "StepCache", "StepDef"]

_STEP_TAG = r"^[A-Za-z][A-Za-z0-9_-]{0,62}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


T = TypeVar("T", bound=BaseModel)


def _unique_tags(items: list[T], what: str, attr: str = "tag") -> list[T]:
    """``items`` when their ``attr`` (tag, name) values are unique; ValueError naming repeats."""
    tags = [getattr(item, attr) for item in items]
    repeated = sorted({t for t in tags if tags.count(t) > 1})
    if repeated:
        raise ValueError(f"{what}; repeated: {', '.join(repeated)}")
    return items


class StepCache(_Model):
    """Reuse a step's stored result: the cache resource's tag, ttl, lock and stale window.

    Unset fields take the cache resource's; see ``cache=`` in docs/apps.md ("Caching").
    """

    tag: str
    ttl: Duration | None = None
    lock: bool | None = None
    stale: Duration | None = None


class StepDef(_Model):
    """One step of a sequence."""

    tag: str = Field(pattern=_STEP_TAG)
    type: str = Field(
        description="action, database, graph, storage, publish, notification, "
        "cache, feature, dispatch, function, sleep, wait (or a registered type)"
    )
    target: str | None = Field(None, description="app:action, database:action, broker:event, …")
    operation: str | None = Field(
        None, description="storage: save/read/delete; cache: get/set/delete"
    )
    of: str | None = Field(None, description="dispatch: the step type to hand to the jobs engine")
    input: dict[str, Any] = Field(default_factory=dict)
    condition: str | None = Field(None, description="an expression; false skips the step")
    retries: int | dict[str, Any] | None = Field(None, description="as dispatch retries")
    timeout: Duration | None = None
    allow_fail: bool = False
    cache: StepCache | None = None
    output: Any = Field(None, description="a mapping shaping what later steps see")
    duration: Duration | None = Field(None, description="sleep: how long")
    signal: str | None = Field(None, description="wait: the signal's name (default: the tag)")
    schedule: dict[str, Any] | None = Field(None, description="dispatch: when")


class SequenceDef(_Model):
    """Steps run in order; sequences whose parents are done run together."""

    tag: str = Field(pattern=_STEP_TAG)
    parents: list[str] = Field(default_factory=list)
    steps: list[StepDef] = Field(min_length=1)

    @field_validator("steps")
    @classmethod
    def _unique(cls, value: list[StepDef]) -> list[StepDef]:
        return _unique_tags(value, "step tags must be unique in a sequence")


class FeatureDef(_Model):
    """A declarative feature: input schema, sequences, output mapping."""

    description: str | None = None
    input: dict[str, str] = Field(default_factory=dict, description="field -> type ('?' optional)")
    sequences: list[SequenceDef] = Field(min_length=1)
    output: Any = None
    retries: int | dict[str, Any] | None = Field(
        None, description="crash recoveries of the whole run (default: 10)"
    )
    timeout: Duration | None = None

    @field_validator("sequences")
    @classmethod
    def _unique(cls, value: list[SequenceDef]) -> list[SequenceDef]:
        return _unique_tags(value, "sequence tags must be unique")

    @field_validator("input")
    @classmethod
    def _types(cls, value: dict[str, str]) -> dict[str, str]:
        from ductwork.config.models import _check_input_types

        return _check_input_types(value)
