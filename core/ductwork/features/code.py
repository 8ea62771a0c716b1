"""Code-first features: ``@feature("onboard")`` on ``async def onboard(ctx, input)``.

Each ``await ctx.step("charge", fn, …)`` is checkpointed under its name (names are the keys: a
name used twice in one run is refused); on a resume or after a crash a completed step returns
its stored result instead of running again. ``ctx.sleep`` and ``ctx.wait_for_signal`` park the
run durably; ``ctx.feature`` runs a child feature as a run of its own and awaits it
(:mod:`ductwork.features.children`); ``ctx.gather`` runs steps concurrently.

Compensations: a step may carry ``compensate=undo`` (called with the step's output). When the
run fails, the completed steps' compensations run, each as a checkpointed step
``compensate:<name>`` recorded in the timeline, per the feature's strategy:
``reverse-all`` (default: every one, newest first), ``critical-only`` (steps marked
``critical=True``), ``to-checkpoint`` (steps after the last ``checkpoint=True`` step),
``none``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ductwork.config.durations import parse_duration
from ductwork.engine.spec import RetryPolicy, parse_retries
from ductwork.errors import FeatureFailedError, ValidationError
from ductwork.features.runner import StepRunner, gather_branches

if TYPE_CHECKING:
    from ductwork.client import Ductwork

__all__ = ["CODE_FEATURES", "CodeFeature", "FeatureContext", "feature", "register_feature"]

Strategy = Literal["reverse-all", "critical-only", "to-checkpoint", "none"]
STRATEGIES = ("reverse-all", "critical-only", "to-checkpoint", "none")
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


@dataclass(frozen=True)
class CodeFeature:
    """A registered code-first feature."""

    tag: str
    fn: Callable[[FeatureContext, Any], Awaitable[Any]]
    compensation: Strategy = "reverse-all"


CODE_FEATURES: dict[str, CodeFeature] = {}


def register_feature(fn: Any) -> None:
    """Register an ``@feature``-decorated function (the ``register_features`` hook's callable)."""
    found = getattr(fn, "__ductwork_feature__", None)
    if not isinstance(found, CodeFeature):
        raise ValidationError(f"{fn!r} is not decorated with @feature")
    CODE_FEATURES[found.tag] = found


def feature(tag: str, *, compensation: Strategy = "reverse-all") -> Callable[[F], F]:
    """Decorator: make ``async def fn(ctx, input)`` the code-first feature ``tag``."""
    if compensation not in STRATEGIES:
        raise ValidationError(f"compensation must be one of {', '.join(STRATEGIES)}")

    def wrap(fn: F) -> F:
        probe: Any = fn  # (narrowing fn itself would lose its type F)
        if not inspect.iscoroutinefunction(probe):
            raise ValidationError(f"@feature({tag!r}) needs an async def")
        fn.__ductwork_feature__ = CodeFeature(tag, fn, compensation)  # type: ignore[attr-defined]
        register_feature(fn)
        return fn

    return wrap


@dataclass
class _Done:
    name: str
    output: Any
    compensate: Callable[..., Any] | None
    critical: bool
    checkpoint: bool


@dataclass
class FeatureContext:
    """What a code-first feature's steps go through."""

    runner: StepRunner
    input: Any
    prefix: str = ""
    completed: list[_Done] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.runner.run_id

    @property
    def dw(self) -> Ductwork:
        """The client (resources by tag)."""
        return self.runner.dw

    @property
    def env(self) -> str:
        """The run's environment."""
        return self.runner.env

    @property
    def session(self) -> dict[str, Any]:
        """The data of the session the run was started with (``session=``), else ``{}``."""
        from ductwork.features.interpreter import _session

        return dict(_session.get() or {})

    def idempotency_key(self, name: str) -> str:
        """``<run_id>:<step_key>`` for the step ``name``: give it to what accepts one."""
        return self.runner.idempotency_key(self.prefix + name)

    async def step(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        retries: int | dict[str, Any] | None = None,
        timeout: float | str | None = None,
        allow_fail: bool = False,
        compensate: Callable[..., Any] | None = None,
        critical: bool = False,
        checkpoint: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` once for this run (sync ``fn`` in a thread); its output."""
        key = self.prefix + name
        self.runner.claim_key(key)
        retry = RetryPolicy(max_retries=0) if retries is None else parse_retries(retries)
        seconds = None if timeout is None else parse_duration(timeout)

        async def call() -> Any:
            if inspect.iscoroutinefunction(fn):
                return await fn(*args, **kwargs)
            result = await asyncio.to_thread(fn, *args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        status, output = await self.runner.step(
            key, call, retry=retry, timeout=seconds, allow_fail=allow_fail
        )
        if status == "succeeded":
            self.completed.append(_Done(name, output, compensate, critical, checkpoint))
        return output

    async def function(self, name: str, function: str, input: Any, **options: Any) -> Any:
        """Run the registered function ``function`` as step ``name`` (input checked first)."""
        from ductwork.features.functions import call_function

        return await self.step(name, call_function, function, input or {}, **options)

    async def sleep(self, name: str, duration: float | str) -> None:
        """Sleep durably: the run parks (no worker holds it) and wakes after ``duration``."""
        key = self.prefix + name
        self.runner.claim_key(key)
        await self.runner.sleep(key, parse_duration(duration))

    async def wait_for_signal(self, name: str, timeout: float | str | None = None) -> Any:
        """Park until ``features.signal(run_id, name, payload)``; the payload."""
        key = self.prefix + name
        self.runner.claim_key(key)
        seconds = None if timeout is None else parse_duration(timeout)
        return await self.runner.wait(key, name, seconds)

    async def feature(
        self,
        tag: str,
        input: Any = None,
        *,
        name: str | None = None,
        timeout: float | str | None = None,
        allow_fail: bool = False,
    ) -> Any:
        """Run feature ``tag`` as a child run of its own and await its output durably.

        The child is listed with a link to this run; this run parks while the child runs.
        """
        from ductwork.features.children import run_child

        key = self.prefix + (name or tag)
        self.runner.claim_key(key)
        seconds = None if timeout is None else parse_duration(timeout)
        _, output = await run_child(
            self.runner, key, tag, input, allow_fail=allow_fail, timeout=seconds
        )
        return output

    async def gather(self, *steps: Awaitable[Any]) -> list[Any]:
        """Await several steps concurrently; each finishes (and is stored) before an error."""
        return await gather_branches(list(steps))


async def run_code(runner: StepRunner, found: CodeFeature, data: Any, prefix: str) -> Any:
    """Run a code-first feature; on failure, its compensations per its strategy."""
    ctx = FeatureContext(runner, data, prefix)
    try:
        return await found.fn(ctx, data)
    except FeatureFailedError:
        await _compensate(ctx, found.compensation)
        raise


async def _compensate(ctx: FeatureContext, strategy: Strategy) -> None:
    done = ctx.completed
    if strategy == "none":
        return
    if strategy == "critical-only":
        done = [d for d in done if d.critical]
    elif strategy == "to-checkpoint":
        marks = [i for i, d in enumerate(done) if d.checkpoint]
        done = done[marks[-1] + 1 :] if marks else done
    for item in reversed(done):
        if item.compensate is None:
            continue
        undo = item.compensate

        async def call(undo: Callable[..., Any] = undo, output: Any = item.output) -> Any:
            if inspect.iscoroutinefunction(undo):
                return await undo(output)
            return await asyncio.to_thread(undo, output)

        key = f"{ctx.prefix}compensate:{item.name}"
        await ctx.runner.step(
            key, call, retry=RetryPolicy(max_retries=2, backoff=0.1), allow_fail=True
        )
