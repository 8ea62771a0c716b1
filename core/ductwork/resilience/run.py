"""Calling a quota's or fallback's providers: health, circuits, retries, switching.

:func:`route` is the one loop both use. It validates the input, counts it against the usage
limit (before any provider is called), asks ``dw.health.healthy`` about every provider that
names a healthcheck and drops the unhealthy ones (when none is healthy, all are tried:
``was_healthy`` is then False), then takes providers one at a time — in order for a fallback,
at random by weight among those left for a quota — skipping those whose circuit is open, and
calls each up to ``1 + retries`` times. The first success returns; when every provider failed
or was skipped, one :class:`~ductwork.errors.AllProvidersFailedError` lists each one's failure.

A provider is reached through its step type's job and the jobs engine's executor (the path
feature steps and ``dispatch`` take), its input and output shaped by the compiled mappings.
A :class:`~ductwork.errors.ValidationError` (the call's input is wrong) is raised at once;
an answer the output mapping cannot read is that provider's failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ductwork._redact import redact
from ductwork.engine.executors import executor_for
from ductwork.errors import AllProvidersFailedError, ProviderFailure, ValidationError
from ductwork.resilience.guard import guard_for
from ductwork.resilience.limits import enforce

if TYPE_CHECKING:
    from ductwork.client import Ductwork
    from ductwork.resilience.plan import GroupPlan, ProviderPlan

__all__ = ["RoutedResult", "call_provider", "route"]


@dataclass(frozen=True)
class RoutedResult:
    """What a quota or fallback answered, and who answered it."""

    output: Any  # the provider's answer through its output mapping
    provider: str  # the provider's name
    latency: float  # seconds, of the call that succeeded
    was_healthy: bool  # False when no provider was healthy and this one was tried anyway
    retries_used: int  # calls repeated on a provider, over the whole run
    providers_tried: list[str]  # in the order they were called (the last one answered)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON data (a job's or a step's output)."""
        return asdict(self)


def _describe(exc: BaseException, timeout: float | None) -> str:
    if isinstance(exc, TimeoutError) and timeout is not None:
        return f"TimeoutError: no answer within {timeout:g}s"
    text = str(exc)
    return redact(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


async def call_provider(
    dw: Ductwork, provider: ProviderPlan, data: Mapping[str, Any], env: str, key: str | None
) -> Any:
    """Call ``provider``'s target with ``data`` mapped by its input mapping; its raw answer."""
    from ductwork.features.types import STEP_TYPES

    where = f"providers.{provider.name}"
    context = {"input": data, "env": env, "product": dw.product}
    mapped = data if provider.input is None else provider.input.render(context, where=where)
    if not isinstance(mapped, Mapping):
        raise ValidationError(f"{where}.input: the mapping must give a mapping, not {mapped!r}")
    step = provider.step
    if step.type == "feature":
        return await dw.features.run(provider.target, mapped, env=env, idempotency_key=key)
    to_job = STEP_TYPES[step.type].to_job
    assert to_job is not None
    kind, target, job = to_job(step, provider.target, mapped, key or "")
    if key is None:
        job.pop("idempotency_key", None)  # none given: none sent (no header, no derived id)
    return await executor_for(kind)(dw, target, job, env)


async def _attempt(
    dw: Ductwork,
    plan: GroupPlan,
    provider: ProviderPlan,
    data: Mapping[str, Any],
    env: str,
    key: str | None,
) -> tuple[bool, Any, float, str]:
    """One call: (succeeded, mapped output, latency, failure text)."""
    started = time.perf_counter()
    try:
        pending = call_provider(dw, provider, data, env, key)
        timeout = provider.timeout
        result = await (asyncio.wait_for(pending, timeout) if timeout else pending)
    except ValidationError:
        raise
    except Exception as exc:
        return False, None, 0.0, _describe(exc, provider.timeout)
    latency = time.perf_counter() - started
    if provider.output is None:
        return True, result, latency, ""
    context = {"input": data, "env": env, "product": dw.product, "result": result}
    where = f"{plan.section}.{plan.tag}.providers.{provider.name}.output"
    try:
        return True, provider.output.render(context, where=where), latency, ""
    except ValidationError as exc:  # an answer of another shape: this provider failed
        return False, None, latency, _describe(exc, None)


async def _healthy(dw: Ductwork, plan: GroupPlan, env: str) -> dict[str, bool]:
    tags = plan.healthchecks
    # one at a time: a task per check costs more than the contract's answer (a lookup)
    return {tag: await dw.health.healthy(tag, env) for tag in tags}


async def route(
    dw: Ductwork,
    plan: GroupPlan,
    input: Any,
    env: str,
    *,
    weighted: bool,
    idempotency_key: str | None = None,
) -> RoutedResult:
    """Run ``plan`` (a quota when ``weighted``, else a fallback); see the module docstring."""
    guard = guard_for(dw)
    data = plan.validate_input(input)
    if plan.limit is not None:
        await enforce(dw, plan.limit, data, env)
    health = await _healthy(dw, plan, env)
    failures: list[ProviderFailure] = []
    healthy: list[ProviderPlan] = []
    for p in plan.providers:
        if p.healthcheck is None or health[p.healthcheck]:
            healthy.append(p)
        else:
            failures.append(
                ProviderFailure(p.name, p.target, f"unhealthy (healthcheck {p.healthcheck})")
            )
    was_healthy = bool(healthy)
    left = healthy if healthy else list(plan.providers)
    if not was_healthy:
        failures.clear()  # each is tried after all: its own failure will say why
    tried: list[str] = []
    retries_used = 0
    while left:
        if weighted and len(left) > 1:
            index = guard.random.choices(range(len(left)), [p.weight for p in left])[0]
        else:
            index = 0
        provider = left.pop(index)
        breaker = await guard.breaker(dw, provider, env)
        attempts, error = 0, "circuit open"
        key = None if idempotency_key is None else f"{idempotency_key}:{provider.name}"
        while attempts <= provider.retries:
            permit = None if breaker is None else await breaker.allow()
            if breaker is not None and permit is None:
                error = "circuit open" if attempts == 0 else f"{error}; then the circuit opened"
                break
            if attempts == 0:
                tried.append(provider.name)
            else:
                retries_used += 1
            attempts += 1
            try:
                ok, output, latency, error = await _attempt(dw, plan, provider, data, env, key)
            except ValidationError:  # the call's input is wrong: no provider's failure
                if breaker is not None and permit == "probe":
                    await breaker.release()
                raise
            if breaker is not None and permit is not None:
                await breaker.record(permit, ok)
            if ok:
                return RoutedResult(
                    output, provider.name, latency, was_healthy, retries_used, tried
                )
        failures.append(ProviderFailure(provider.name, provider.target, error, attempts))
    what = "quota" if weighted else "fallback"
    raise AllProvidersFailedError(
        f"{what} {plan.tag!r}: every provider failed",
        failures=failures,
        resource=f"{plan.section}.{plan.tag}",
        env=env,
    )
