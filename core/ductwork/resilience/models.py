"""The ``quotas:`` and ``fallbacks:`` sections of ``ductwork.yaml``, and usage limits.

::

    quotas:
      sms:
        input: {to: str, text: str}
        limits: {key: "{{ input.to }}", max: 5, per: 1m}
        providers:
          - {name: twilio, target: "twilio:send", weight: 70, healthcheck: sms-twilio,
             input: {To: "{{ input.to }}", Body: "{{ input.text }}"},
             output: {id: "{{ result.body.sid }}"}, retries: 1}
          - {name: vonage, target: "vonage:sms", weight: 30,
             input: {to: "{{ input.to }}", text: "{{ input.text }}"},
             output: {id: "{{ result.body.messages[0]['message-id'] }}"}}
    fallbacks:
      charge:
        providers: [{name: stripe, target: "stripe:charge"}, {name: adyen, target: "adyen:pay"}]

Structure is checked here; targets, healthchecks, caches and expressions are checked by
:func:`ductwork.resilience.plan.compile_resilience` when the product loads.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ductwork.config.durations import Duration
from ductwork.features.models import _unique_tags

__all__ = [
    "BreakerDef",
    "FallbackDef",
    "FallbackProvider",
    "QuotaDef",
    "QuotaProvider",
    "UsageLimit",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UsageLimit(_Model):
    """At most ``max`` calls per ``per`` for each value of ``key`` (an expression)."""

    key: str = Field("all", description="an expression over input, e.g. '{{ input.user_id }}'")
    max: int = Field(ge=1, description="calls allowed per window and key")
    per: Duration = Field(gt=0, description="the window, e.g. 1m")
    cache: str | None = Field(
        None,
        description="cache resource holding the counters (shared across processes); "
        "default: the embedded in-process cache",
    )


class BreakerDef(_Model):
    """A circuit breaker per provider target: closed, open, half-open (see docs/resilience.md)."""

    failures: int = Field(5, ge=1, description="consecutive failures that open the circuit")
    rate: float | None = Field(
        None, gt=0, le=1, description="a failure rate over 'window' that opens it (0-1)"
    )
    window: Duration = Field(60.0, gt=0, description="the window of 'rate'")
    min_calls: int = Field(10, ge=1, description="calls in a window before 'rate' applies")
    cooldown: Duration = Field(30.0, gt=0, description="open this long, then one probe call")
    cache: str | None = Field(
        None,
        description="cache resource holding the state (shared across processes); "
        "default: in process",
    )


class FallbackProvider(_Model):
    """One provider: a target, how the input maps to it and its answer maps back."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
    target: str = Field(description="app:action, database:action, notification:message, feature")
    type: str | None = Field(
        None,
        description="action, database, notification, feature (or another step type); "
        "default: found from the target",
    )
    input: Any = Field(None, description="mapping of the call's input (default: passed as is)")
    output: Any = Field(None, description="mapping of the answer ('result') to one shape")
    retries: int = Field(0, ge=0, le=100, description="retries on this provider before the next")
    timeout: Duration | None = Field(None, gt=0, description="a call slower than this failed")
    healthcheck: str | None = Field(None, description="the healthcheck that governs it")
    breaker: BreakerDef | bool | None = Field(
        None, description="this provider's breaker (default: the quota's or fallback's)"
    )


class QuotaProvider(FallbackProvider):
    """A quota's provider: a fallback provider with a relative weight."""

    weight: float = Field(1.0, description="relative share of calls (70/30 equals 7/3)")


class _Group(_Model):
    description: str | None = None
    input: dict[str, str] = Field(default_factory=dict, description="field -> type ('?' optional)")
    healthcheck: str | None = Field(None, description="default healthcheck of its providers")
    breaker: BreakerDef | bool = Field(
        True, description="circuit breakers per target (true: the defaults; false: none)"
    )
    limits: UsageLimit | None = None

    @field_validator("input")
    @classmethod
    def _types(cls, value: dict[str, str]) -> dict[str, str]:
        from ductwork.config.models import _check_input_types

        return _check_input_types(value)

    @field_validator("providers", check_fields=False)
    @classmethod
    def _unique(cls, value: list[Any]) -> list[Any]:
        return _unique_tags(value, "provider names must be unique", "name")


class FallbackDef(_Group):
    """Providers tried in order; the first success answers."""

    providers: list[FallbackProvider] = Field(default_factory=list)


class QuotaDef(_Group):
    """Providers picked at random by weight among the healthy ones."""

    providers: list[QuotaProvider] = Field(default_factory=list)
