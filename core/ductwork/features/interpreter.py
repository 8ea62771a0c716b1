"""The declarative interpreter, and the jobs engine's ``feature`` executor.

A feature run is a run of kind ``feature`` whose target is the feature's tag and whose input
is ``{"input": …}``. The executor loads the run's stored steps, then walks the plan: layers in
order, the sequences of a layer concurrently, the steps of a sequence in order. Each step's
mappings are rendered from ``input``, ``steps.<sequence>.<step>`` (``output``, ``status``),
``env``, ``product`` and ``session`` (the data of the session the run was started with,
``{}`` without one); a step that already completed returns its stored output.
"""

from __future__ import annotations

import hashlib
import json
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ductwork.engine import steps as store_steps
from ductwork.engine.executors import executor_for, register_executor, split_target
from ductwork.engine.steps import LeaseLost, Parked, current_run
from ductwork.errors import DuctworkError
from ductwork.features.children import notify_parent, run_child
from ductwork.features.runner import Parking, StepRunner, gather_branches

if TYPE_CHECKING:
    from ductwork.client import Ductwork
    from ductwork.features.plan import FeaturePlan, SequencePlan, StepPlan

__all__ = ["execute_feature", "run_plan"]

# The session data of the run being executed (child features see their parent's).
_session: ContextVar[dict[str, Any] | None] = ContextVar("ductwork_feature_session", default=None)


async def execute_feature(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    """The ``feature`` executor: run the feature ``target`` for the current claimed run."""
    cur = current_run.get()
    if cur is None:
        raise DuctworkError("feature runs are executed by a worker (or features.run)")
    stored: dict[str, store_steps.StepRow] = {}
    # epoch 1 is a run's first claim ever (claims, reaps, releases and parks each bump it):
    # nothing can be stored yet unless a replay copied steps in, so skip the read
    if cur.claimed.epoch != 1 or data.get("copied"):
        async with cur.store.engine.connect() as conn:
            stored = await store_steps.load_steps(conn, cur.claimed.id)
    runner = StepRunner(dw, cur, env, stored)
    bound = data.get("session")  # {"tag", "id"}: read back (sealed) from the session's row
    session = None if not bound else await dw.sessions.data_of(bound["tag"], bound["id"], env)
    from ductwork.features.code import CodeFeature, run_code
    from ductwork.processor.features import find_feature

    found = find_feature(dw, target)
    parent = data.get("parent")
    runner.session = bound  # a child feature run carries it on
    reset = _session.set(session)  # an inline run shares the caller's context: reset after
    try:
        if isinstance(found, CodeFeature):
            output = await run_code(runner, found, data.get("input"), "")
        else:
            output = await run_plan(runner, found, data.get("input") or {}, "")
    except Parking as parking:
        await store_steps.park(cur, wake_at=parking.wake_at, detail=f"until {parking.wake_at}")
        raise Parked(cur.claimed.id) from None
    except LeaseLost:
        raise
    except Exception as exc:
        c = cur.claimed
        if parent is not None and (
            c.attempt >= c.max_attempts or not c.retry.retries(exc)
        ):  # its last word: the parent awaits it
            await notify_parent(cur, parent, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        _session.reset(reset)
    if parent is not None:
        await notify_parent(cur, parent, "succeeded", output)
    return output


async def run_plan(runner: StepRunner, plan: FeaturePlan, data: dict[str, Any], prefix: str) -> Any:
    """Walk ``plan``'s layers; the rendered feature output."""
    context: dict[str, Any] = {
        "input": data,
        "steps": {s.tag: {} for layer in plan.layers for s in layer},
        "env": runner.env,
        "product": runner.dw.product,
        "session": _session.get() or {},
    }
    for layer in plan.layers:
        await gather_branches([_sequence(runner, plan, seq, context, prefix) for seq in layer])
    if plan.output is None:
        return None
    return plan.output.render(context, where=f"features.{plan.tag}.output")


async def _sequence(
    runner: StepRunner, plan: FeaturePlan, seq: SequencePlan, context: dict[str, Any], prefix: str
) -> None:
    for step in seq.steps:
        status, output = await _step(runner, plan, step, context, prefix)
        context["steps"][seq.tag][step.spec.tag] = {"status": status, "output": output}


async def _step(
    runner: StepRunner, plan: FeaturePlan, step: StepPlan, context: dict[str, Any], prefix: str
) -> tuple[str, Any]:
    key = prefix + step.key
    spec = step.spec
    where = f"features.{plan.tag}.{step.sequence}.{spec.tag}"
    done = runner.done(key, spec.allow_fail)
    if done is not None:
        return done.status, done.output
    if step.condition is not None and not step.condition.render(context, where=where):
        await runner.skip(key)
        return "skipped", None
    if spec.type == "sleep":
        await runner.sleep(key, spec.duration or 0.0)
        return "succeeded", None
    if spec.type == "wait":
        payload = await runner.wait(
            key, spec.signal or spec.tag, spec.timeout, allow_fail=spec.allow_fail
        )
        return "succeeded", payload
    data = step.input.render(context, where=f"{where}.input")

    async def call() -> Any:
        result = await _call(runner, plan, step, data, key)
        if step.output is None:
            return result
        return step.output.render({**context, "result": result}, where=f"{where}.output")

    if spec.type == "feature":  # its own run, awaited durably (timeout: how long to wait)
        return await run_child(
            runner, key, spec.target or "", data, allow_fail=spec.allow_fail, timeout=spec.timeout
        )
    timeout = spec.timeout
    return await runner.step(
        key, call, retry=step.retry, timeout=timeout, allow_fail=spec.allow_fail
    )


async def _call(
    runner: StepRunner, plan: FeaturePlan, step: StepPlan, data: dict[str, Any], key: str
) -> Any:
    """Run one step's target (through the jobs engine's executors), its cache first."""
    spec = step.spec
    dw = runner.dw
    assert spec.target is not None or spec.type in ("sleep", "wait")
    target = spec.target or ""
    if spec.type == "dispatch":
        from ductwork.features.types import step_type

        inner = step_type(spec.of or "")
        assert inner.to_job is not None
        kind, job_target, job_data = inner.to_job(spec, target, data, runner.idempotency_key(key))
        job = await dw.jobs.submit(
            kind,
            job_target,
            split_target(job_target)[0],
            job_data,
            schedule=spec.schedule,
            env=runner.env,
        )
        return job.to_dict()
    assert step.kind.to_job is not None
    kind, job_target, job_data = step.kind.to_job(spec, target, data, runner.idempotency_key(key))
    execute = executor_for(kind)
    if spec.cache is None:
        return await execute(dw, job_target, job_data, runner.env)
    from ductwork.processor._flights import CachePolicy, through_cache

    # The idempotency key names this run's step: the same input in another run is the same call.
    keyed = {k: v for k, v in job_data.items() if k != "idempotency_key"}
    text = json.dumps(keyed, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    policy = CachePolicy.model_validate(spec.cache.model_dump())
    value, _ = await through_cache(
        dw,
        policy,
        f"features:{plan.tag}:{step.key}:{digest}",
        runner.env,
        lambda: execute(dw, job_target, job_data, runner.env),
    )
    return value


register_executor("feature", execute_feature)
