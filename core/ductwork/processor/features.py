"""``dw.features``: run durable workflows, inspect, replay, resume, cancel and signal them.

A feature run is a run of kind ``feature`` in the jobs engine's run store, executed by any
worker (or, with ``run(wait=True)``, claimed and executed in the calling process under the
same lease and fencing). Every call checks its input before anything is stored.
"""

from __future__ import annotations

import builtins
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Unpack

from ductwork.errors import FeatureFailedError, NotFoundError, ValidationError
from ductwork.processor._base import JobOptions, Namespace, json_payload
from ductwork.processor._feature_runs import (
    FeatureRun,
    find_feature,
    load_modules,
    merged_timeline,
    step_start,
    to_datetime,
    written_order,
)

if TYPE_CHECKING:
    from ductwork.client import Ductwork
    from ductwork.engine.spec import Job
    from ductwork.engine.store import Store

__all__ = ["FeatureRun", "Features", "find_feature"]

RESUMABLE = ("failed", "cancelled", "waiting")


class Features(Namespace):
    """The product's features (workflows)."""

    section = "features"

    def __init__(self, client: Ductwork) -> None:
        super().__init__(client)
        import ductwork.features.interpreter  # registers the ``feature`` executor
        import ductwork.features.types  # noqa: F401  # registers the step types' executors

    def _input(self, tag: str, input: Any) -> tuple[Any, Any]:
        from ductwork.features.code import CodeFeature

        found = find_feature(self._client, tag)
        if isinstance(found, CodeFeature):
            return found, json_payload(input, f"feature {tag!r} input")
        return found, found.validate_input(input or {})

    async def _store(self, env: str | None) -> Store:
        return await self._client.jobs.store(env)

    async def start(
        self,
        tag: str,
        input: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        env: str | None = None,
        session: tuple[str, str] | None = None,
        _copy: tuple[str, builtins.list[str]] | None = None,
        _parent: str | None = None,
        _bound: dict[str, str] | None = None,
    ) -> FeatureRun:
        """Store a run of feature ``tag`` for the workers; its handle (no waiting).

        ``session=(session tag, token)``: the session's data is ``session.*`` in the
        mappings; a bad, expired or revoked token fails here, before anything is stored.
        """
        from ductwork.engine.steps import create_run
        from ductwork.engine.store import NewRun, new_id, now_ms, run_values

        env_name = self._client.config.env_name(env or self._client.env)
        found, checked = self._input(tag, input)
        if session is not None:
            tag_id = await self._client.sessions.bind(session, env_name)
            _bound = {"tag": tag_id[0], "id": tag_id[1]}
        retry = getattr(found, "retry", None)
        if retry is None:
            from ductwork.features.plan import RUN_RETRY

            retry = RUN_RETRY
        payload: dict[str, Any] = {"input": checked}
        if _parent is not None:
            payload["parent"] = _parent  # its executor hands the outcome to the parent
        if _bound is not None:  # the session's id, never its token or data
            payload["session"] = _bound
        if _copy is not None and _copy[1]:
            payload["copied"] = True  # steps are stored before its first claim
        definition = getattr(found, "definition", None)
        timeout = definition.timeout if definition is not None else None
        new = NewRun("feature", tag, tag, env_name, payload, now_ms(), retry, timeout=timeout)
        values = run_values(new, now_ms())
        if idempotency_key is not None:
            digest = hashlib.sha256(f"{env_name}\0{tag}\0{idempotency_key}".encode()).hexdigest()
            values["id"] = f"run_{digest[:32]}"
        else:
            values["id"] = new_id("run")
        if _copy is not None:
            values["forked_from"] = _copy[0]
        values["parent_run_id"] = _parent
        row, created = await create_run(
            await self._store(env_name),
            values,
            copy_from=_copy[0] if _copy else None,
            copy_keys=_copy[1] if _copy else (),
        )
        return FeatureRun(row.id, row.tag, row.status, row.env, created=created)

    async def run(
        self,
        tag: str,
        input: Mapping[str, Any] | None = None,
        *,
        wait: bool = True,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        env: str | None = None,
        session: tuple[str, str] | None = None,
    ) -> Any:
        """Run feature ``tag``: with ``wait``, its output; otherwise a :class:`FeatureRun`.

        With ``wait`` the run executes in this process (claimed under a lease like a worker's
        claim; a worker finishes it if this process dies); a run that sleeps or waits for a
        signal is finished by the workers while this call polls. An ``idempotency_key`` seen
        before returns that run (its output, with ``wait``) instead of starting another.
        ``session=(session tag, token)`` makes the session's data ``session.*`` in mappings.

        Raises:
            NotFoundError: no such feature. ValidationError: the input does not match.
            SessionInvalidError (or its Expired/Revoked subclasses): ``session`` is refused.
            FeatureFailedError: the run failed (``run_id`` says which). TimeoutError: it did
                not end within ``timeout`` seconds (it goes on).
        """
        handle = await self.start(
            tag, input, idempotency_key=idempotency_key, env=env, session=session
        )
        if not wait:
            return handle
        return await self._finish(handle.run_id, handle.env, timeout)

    async def _finish(self, run_id: str, env: str, timeout: float | None) -> Any:
        from ductwork.features.inline import follow

        store = await self._store(env)
        lease = self._client.jobs.settings(env).lease
        row = await follow(self._client, store, run_id, timeout, lease=lease)
        if row.status == "succeeded":
            return json.loads(row.result) if row.result else None
        raise FeatureFailedError(
            f"feature run {run_id} ({row.tag}) {row.status}: {row.last_error}", run_id=run_id
        )

    async def output(self, run_id: str, *, env: str | None = None) -> FeatureRun:
        """Status, input, output, per-step results (status, attempts, times) and timeline."""
        from sqlalchemy import select

        from ductwork.engine.admin import timeline
        from ductwork.engine.schema import run, step

        store = await self._store(env)
        async with store.engine.connect() as conn:
            row = (await conn.execute(select(run).where(run.c.id == run_id))).first()
            if row is None or row.kind != "feature":
                raise NotFoundError(f"no feature run {run_id!r}")
            rows = (
                await conn.execute(
                    select(step)
                    .where(step.c.run_id == run_id)
                    .order_by(step.c.started_at, written_order(store.dialect))
                )
            ).all()
        steps = [
            {
                "key": s.step_key,
                "status": s.status,
                "attempts": s.attempt,
                "started_at": to_datetime(s.started_at),
                "finished_at": to_datetime(s.finished_at),
                "duration_ms": None
                if s.finished_at is None or s.started_at is None
                else s.finished_at - s.started_at,
                "output": json.loads(s.output) if s.output is not None else None,
                "error": s.error,
                "wake_at": to_datetime(s.wake_at),
                "signal": s.signal,
            }
            for s in rows
        ]
        return FeatureRun(
            run_id=row.id,
            tag=row.tag,
            status=row.status,
            env=row.env,
            output=json.loads(row.result) if row.result else None,
            error=row.last_error if row.status != "succeeded" else None,
            steps=steps,
            timeline=merged_timeline(await timeline(store, run_id), steps),
            input=json.loads(row.input).get("input"),
            attempt=row.attempt,
            started_at=to_datetime(row.started_at),
            finished_at=to_datetime(row.finished_at),
            forked_from=row.forked_from,
            parent_run_id=row.parent_run_id,
        )

    async def replay(
        self,
        run_id: str,
        from_step: str | None = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
        env: str | None = None,
    ) -> Any:
        """A NEW run with the original input; results of steps before ``from_step`` reused."""
        old = await self.output(run_id, env=env)
        keys: builtins.list[str] = []
        if from_step is not None:
            cut = step_start(old, from_step)
            keys = [
                s["key"]
                for s in old.steps
                if s["status"] in ("succeeded", "skipped") and s["started_at"] < cut
            ]
        handle = await self.start(
            old.tag,
            old.input,
            env=old.env,
            _copy=(run_id, keys),
            _bound=await self._client.sessions.of_run(run_id, old.env),
        )
        if not wait:
            return handle
        return await self._finish(handle.run_id, handle.env, timeout)

    async def resume(
        self,
        run_id: str,
        from_step: str | None = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
        env: str | None = None,
    ) -> Any:
        """Continue the SAME failed, cancelled or waiting run; completed steps are not re-run.

        With ``from_step``, that step and every step that started after it run again.
        """
        from sqlalchemy import update

        from ductwork.engine.schema import run, run_event, step
        from ductwork.engine.steps import forget_steps
        from ductwork.engine.store import _event, now_ms

        old = await self.output(run_id, env=env)
        if old.status not in RESUMABLE:
            hint = "; replay it for a new run" if old.status == "succeeded" else ""
            raise ValidationError(
                f"cannot resume feature run {run_id}: it is {old.status} (only failed, "
                f"cancelled or waiting runs resume){hint}"
            )
        forget: builtins.list[str] = []
        if from_step is not None:
            cut = step_start(old, from_step)
            forget = [s["key"] for s in old.steps if s["started_at"] >= cut]
        store = await self._store(old.env)
        now = now_ms()
        async with store.tx() as conn:
            await forget_steps(conn, run_id, forget)
            if from_step is None and old.status == "waiting":  # a sleep ends now; waits wait
                await conn.execute(
                    update(step)
                    .where(
                        step.c.run_id == run_id,
                        step.c.status == "waiting",
                        step.c.signal.is_(None),
                    )
                    .values(wake_at=now)
                )
            done = await conn.execute(
                update(run)
                .where(run.c.id == run_id, run.c.status == old.status)
                .values(
                    status="queued",
                    run_at=now,
                    attempt=0,
                    finished_at=None,
                    cancel_requested=False,
                    last_error=None,
                )
            )
            if done.rowcount != 1:
                raise ValidationError(f"feature run {run_id} changed meanwhile; try again")
            detail = f"from {from_step}" if from_step else None
            await conn.execute(
                run_event.insert().values(_event(run_id, "resume", now, 0, None, detail))
            )
        if not wait:
            return await self.output(run_id, env=old.env)
        return await self._finish(run_id, old.env, timeout)

    async def cancel(self, run_id: str, *, env: str | None = None) -> FeatureRun:
        """Cancel a queued or waiting run; ask a running one to stop (at its next heartbeat).

        Its unfinished child runs are cancelled with it. A child run cancelled on its own
        hands its parent the outcome ``cancelled``: the parent's step fails (``allow_fail``
        applies) instead of waiting for ever.
        """
        import contextlib

        from ductwork.engine import admin
        from ductwork.engine.signals import signal
        from ductwork.features.children import CHILD

        old = await self.output(run_id, env=env)
        store = await self._store(old.env)
        await admin.cancel(store, run_id)
        if old.parent_run_id is not None:
            outcome = {"status": "cancelled", "output": None, "error": "it was cancelled"}
            # a parent gone or finished awaits nothing
            with contextlib.suppress(NotFoundError, ValidationError):
                await signal(store, old.parent_run_id, CHILD + run_id, outcome, internal=True)
        return await self.output(run_id, env=old.env)

    async def signal(
        self, run_id: str, name: str, payload: Any = None, *, env: str | None = None
    ) -> FeatureRun:
        """Deliver signal ``name`` (with ``payload``) to a run; the run's state after it.

        A run parked on a wait for it resumes at once; a run that has not reached that wait
        yet keeps the signal (pending) for it. Refused, nothing stored: a finished run, a
        declarative feature with no wait for ``name``, a second pending ``name``.
        """
        from ductwork.engine.signals import signal

        json_payload(payload, "a signal's payload")
        store = await self._store(env)
        await signal(store, run_id, name, payload, waits_for=self._waits_for)
        return await self.output(run_id, env=env)

    def _waits_for(self, tag: str) -> frozenset[str] | None:
        """The signals feature ``tag`` waits for; ``None``: any (child runs wait on their own)."""
        from ductwork.features.code import CodeFeature

        found = find_feature(self._client, tag)
        if isinstance(found, CodeFeature):
            return None  # code decides at run time
        names: set[str] = set()
        for layer in found.layers:
            for seq in layer:
                for plan in seq.steps:
                    spec = plan.spec
                    if spec.type == "wait":
                        names.add(spec.signal or spec.tag)
        return frozenset(names)

    async def list(
        self,
        tag: str | None = None,
        *,
        status: str | None = None,
        limit: int = 100,
        env: str | None = None,
    ) -> builtins.list[Job]:
        """Feature runs newest first, filtered by feature tag and status."""
        from ductwork.engine import admin

        store = await self._store(env)
        return await admin.list_jobs(store, status=status, kind="feature", tag=tag, limit=limit)

    def check(self) -> builtins.list[str]:
        """Check what config load cannot: function and child-feature targets exist.

        Imports the config's ``modules`` and calls the plugins' hooks; returns the feature
        tags. Raises :class:`~ductwork.errors.ConfigError` naming the step.
        """
        from ductwork.errors import ConfigError
        from ductwork.features.functions import FUNCTIONS

        load_modules(self._client)
        known = self.tags()
        fname = str(self._client.config.file) if self._client.config.file else None
        for tag, plan in self._client.config.product.feature_plans.items():
            for step in (s for layer in plan.layers for q in layer for s in q.steps):
                spec = step.spec
                kind = spec.of if spec.type == "dispatch" else spec.type
                where = f"features.{tag}.{step.key.replace('/', '.')}.target"
                if kind == "function" and spec.target not in FUNCTIONS:
                    raise ConfigError(
                        f"no function {spec.target!r} (functions: "
                        f"{', '.join(sorted(FUNCTIONS)) or 'none'}); register it with the "
                        "register_functions hook or a module listed in 'modules'",
                        file=fname,
                        path=where,
                    )
                if kind == "feature" and spec.target not in known:
                    raise ConfigError(
                        f"no feature {spec.target!r} (features: {', '.join(known)})",
                        file=fname,
                        path=where,
                    )
        return known

    def tags(self) -> builtins.list[str]:
        """Every feature's tag: declarative and code-first."""
        from ductwork.features.code import CODE_FEATURES

        load_modules(self._client)
        return sorted({*self._client.config.product.feature_plans, *CODE_FEATURES})

    async def dispatch(
        self, tag: str, input: Mapping[str, Any] | None = None, **opts: Unpack[JobOptions]
    ) -> Job:
        """Run feature ``tag`` as a job, later or on a schedule (``schedule={"cron": …}``)."""
        found, checked = self._input(tag, input)
        if opts.get("retries") is None:
            from ductwork.features.plan import RUN_RETRY

            opts["retries"] = getattr(found, "retry", None) or RUN_RETRY
        return await self._submit("feature", tag, tag, {"input": checked}, opts)
