"""``dw.jobs``: the durable jobs engine as the client sees it.

Every namespace's ``dispatch`` ends in :meth:`Jobs.submit`, which checks the schedule and the
retry policy before the run store is opened, then stores a run (or a recurring schedule). The
store is per env, chosen by the config's ``engine:`` section (default: an SQLite file in
``.ductwork/`` beside the config); it is opened on first use and closed with the client.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ductwork.config.models import EngineSettings
from ductwork.config.references import resolve_references
from ductwork.engine.spec import Job, RetryPolicy, Schedule, parse_retries, parse_schedule
from ductwork.errors import ReferenceResolutionError, ValidationError
from ductwork.processor._base import Group, json_text

if TYPE_CHECKING:
    from ductwork.client import Ductwork
    from ductwork.engine.store import Store

__all__ = ["DEFAULT_ENGINE_URL", "Jobs"]

DEFAULT_ENGINE_URL = "sqlite:///.ductwork/engine.db"
_NOW = Schedule()  # no schedule: one run, now


class Jobs(Group):
    """Dispatched jobs: submit, get, list, cancel, pause, resume, retry."""

    def __init__(self, client: Ductwork) -> None:
        self._client = client
        self._stores: dict[str, Store] = {}
        self._lock = asyncio.Lock()

    def settings(self, env: str | None = None) -> EngineSettings:
        """The engine settings of ``env``, references resolved, SQLite paths made absolute."""
        config = self._client.config
        env_name = config.env_name(env or self._client.env)
        found = config.product.engine.get(env_name) or EngineSettings()
        url = found.url or DEFAULT_ENGINE_URL

        def error(field: str, message: str) -> ReferenceResolutionError:
            return ReferenceResolutionError(message, env=env_name, path=f"engine.{env_name}.url")

        url = resolve_references(url, root=config.root, error=error)
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            path = Path(url.removeprefix("sqlite:///"))
            if not path.is_absolute():
                path = config.root / path
            url = f"sqlite:///{path}"
        return found.model_copy(update={"url": url})

    async def store(self, env: str | None = None) -> Store:
        """The opened run store of ``env`` (opened once, then reused)."""
        env_name = self._client.config.env_name(env or self._client.env)
        found = self._stores.get(env_name)
        if found is not None:  # opened already: no lock to take
            return found
        async with self._lock:
            found = self._stores.get(env_name)
            if found is None:
                settings = self.settings(env_name)
                assert settings.url is not None
                from ductwork.engine.store import Store

                # Creates an SQLite file's folder; a missing driver is a MissingDependencyError.
                found = await Store.open(settings.url, pool_size=settings.pool_size)
                self._stores[env_name] = found
        return found

    async def submit(
        self,
        kind: str,
        target: str,
        tag: str,
        payload: Mapping[str, Any],
        *,
        schedule: Mapping[str, Any] | None = None,
        retries: int | Mapping[str, Any] | RetryPolicy | None = None,
        dedupe_key: str | None = None,
        priority: int = 0,
        queue: str = "default",
        timeout: float | None = None,
        env: str | None = None,
    ) -> Job:
        """Store a run of ``kind`` (or a recurring schedule of them); checked before storing.

        ``payload`` is the run's input: JSON-serialisable (refused with a
        :class:`ValidationError` otherwise), encoded once here.
        """
        from ductwork.engine import admin, records  # one statement: a dispatch pays it per call

        env_name = self._client.config.env_name(env or self._client.env)
        # a one-off run now (the common dispatch) skips the schedule's datetime arithmetic
        now = None if schedule is None else datetime.now(UTC)
        spec = _NOW if now is None else parse_schedule(schedule, now)
        policy = parse_retries(retries)  # no retries given: the default policy, made once
        if timeout is not None and timeout <= 0:
            raise ValidationError("timeout must be a positive number of seconds")
        if not queue or len(queue) > 64:
            raise ValidationError("queue must be a name of 1 to 64 characters")
        # encoded once, here: the namespaces hand their payload over unencoded
        text = json_text(payload, f"the {kind} job's input (a job's input is stored as JSON)")
        store = await self.store(env_name)
        if spec.recurring:
            from ductwork.engine.scheduler import add_schedule

            if dedupe_key is not None:
                raise ValidationError("dedupe_key applies to one-off jobs, not recurring ones")
            row = await add_schedule(
                store,
                kind=kind,
                target=target,
                tag=tag,
                env=env_name,
                input=text,
                spec=spec,
                retry=policy,
                queue=queue,
                priority=priority,
                timeout=timeout,
            )
            return admin.schedule_job(_Row(row))
        now_at = records.now_ms()
        run_at = now_at if now is None else int((spec.first(now) or now).timestamp() * 1000)
        values = records.run_values(
            records.NewRun(
                kind=kind,
                target=target,
                tag=tag,
                env=env_name,
                input=text,
                run_at=run_at,
                retry=policy,
                queue=queue,
                priority=priority,
                timeout=timeout,
                dedupe_key=dedupe_key,
            ),
            now_at,
        )
        # The created run's Job, made before the wait rather than after it: on a store that
        # waits for an fsync, the event loop's first work after waking up runs slowest.
        made = admin.run_job(_Row(records.inserted(values)), now_at)
        row_map, created = await store.enqueue_row(values)
        return made if created else admin.run_job(_Row(row_map))

    async def get(self, job_id: str, *, env: str | None = None) -> Job:
        """One job by id."""
        from ductwork.engine import admin

        return await admin.get(await self.store(env), job_id)

    async def list(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        tag: str | None = None,
        limit: int = 100,
        env: str | None = None,
    ) -> builtins.list[Job]:
        """Jobs newest first, filtered by status, kind or resource tag."""
        from ductwork.engine import admin

        store = await self.store(env)
        return await admin.list_jobs(store, status=status, kind=kind, tag=tag, limit=limit)

    async def timeline(
        self, job_id: str, *, env: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """A run's events (enqueued, started, retry, succeeded …), oldest first."""
        from ductwork.engine import admin

        return await admin.timeline(await self.store(env), job_id)

    async def cancel(self, job_id: str, *, env: str | None = None) -> Job:
        """Cancel a waiting run or a schedule; ask a running run to stop."""
        from ductwork.engine import admin

        return await admin.cancel(await self.store(env), job_id)

    async def pause(self, job_id: str, *, env: str | None = None) -> Job:
        """Hold a waiting run, or a schedule's future slots."""
        from ductwork.engine import admin

        return await admin.pause(await self.store(env), job_id)

    async def resume(self, job_id: str, *, env: str | None = None) -> Job:
        """Release a paused run or schedule."""
        from ductwork.engine import admin

        return await admin.resume(await self.store(env), job_id)

    async def retry(self, job_id: str, *, env: str | None = None) -> Job:
        """Run a failed or cancelled run again with fresh attempts."""
        from ductwork.engine import admin

        return await admin.retry(await self.store(env), job_id)

    async def close(self) -> None:
        """Close every opened run store."""
        stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            await store.close()


class _Row:
    """Attribute access over a row's values, for the Job converters."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.__dict__.update(values)
