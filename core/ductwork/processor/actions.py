"""``dw.actions``: call an HTTP app's actions by tag, per environment.

``run`` validates the input against the action's schemas before anything is sent, optionally
answers from a cache resource (key derived from app, action, env and input; the cache's TTL),
and otherwise sends the request through the app's pooled client for that env (see
:mod:`ductwork.apps.runner`). App settings are resolved per env on first use: ``${env:…}`` and
``${secret:…}`` references are read then, and registered for redaction. ``dispatch`` stores the
same call as a durable job of kind ``actions.run``, run by the jobs engine's workers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Unpack

import pydantic

from ductwork._hints import did_you_mean
from ductwork.apps.models import AppEnv, AppResource, describe_env_errors
from ductwork.config.references import resolve_references
from ductwork.errors import (
    ConfigError,
    NotFoundError,
    ReferenceResolutionError,
    ValidationError,
)
from ductwork.processor._base import JobOptions, Namespace
from ductwork.processor._flights import CachePolicy, cache_policy, call_key, through_cache
from ductwork.providers.storage import check_key

if TYPE_CHECKING:
    from ductwork.apps.body import ActionStream, Opened
    from ductwork.apps.inputs import CompiledAction, Prepared
    from ductwork.apps.runner import ActionResult, AppClient
    from ductwork.client import Ductwork
    from ductwork.engine.spec import Job

__all__ = ["Actions"]


class Actions(Namespace):
    """The product's HTTP apps and their actions."""

    section = "actions"

    def __init__(self, client: Ductwork) -> None:
        super().__init__(client)
        self._apps: dict[tuple[str, str], AppClient] = {}
        self._lock = asyncio.Lock()
        _register_executor()

    def app(self, tag: str) -> AppResource:
        """The app ``tag`` as configured; :class:`NotFoundError` names the known apps."""
        apps = self._client.config.product.apps
        found = apps.get(tag)
        if found is None:
            hint = did_you_mean(tag, apps)
            raise NotFoundError(
                f"no app {tag!r}{hint} (apps: {', '.join(sorted(apps)) or 'none defined'})"
            )
        return found

    def settings(self, tag: str, env: str | None = None) -> AppEnv:
        """App ``tag``'s settings in ``env``, references resolved."""
        config = self._client.config
        env = config.env_name(env or self._client.env)
        app = self.app(tag)
        fname = str(config.file) if config.file else None
        if env not in app.envs:
            raise ConfigError(
                f"apps.{tag} has no settings for env {env!r}; add '{env}: {{base_url: …}}'",
                file=fname,
                env=env,
            )

        def error(field: str, message: str) -> ReferenceResolutionError:
            path = f"apps.{tag}.{env}.{field}" if field else f"apps.{tag}.{env}"
            return ReferenceResolutionError(message, file=fname, env=env, path=path)

        raw = resolve_references(app.envs[env], root=config.root, error=error, path="")
        try:
            return AppEnv.model_validate(raw)
        except pydantic.ValidationError as exc:
            problems = "; ".join(describe_env_errors(exc))
            raise ConfigError(problems, file=fname, env=env, path=f"apps.{tag}.{env}") from None

    async def client(self, app: str, env: str | None = None) -> AppClient:
        """The pooled client of ``app`` in ``env`` (built once, then reused)."""
        env = self._client.config.env_name(env or self._client.env)
        found = self._apps.get((app, env))
        if found is not None:
            return found
        async with self._lock:
            found = self._apps.get((app, env))
            if found is None:
                from ductwork.apps.runner import AppClient

                found = AppClient(app, self.app(app), env, self.settings(app, env))
                self._apps[(app, env)] = found
        return found

    async def run(
        self,
        app: str,
        event: str,
        input: Mapping[str, Any] | None = None,
        *,
        env: str | None = None,
        cache: str | Mapping[str, Any] | CachePolicy | None = None,
        retries: int | None = None,
        session: tuple[str, str] | None = None,
        idempotency_key: str | None = None,
        max_size: int | None = None,
        save_to: tuple[str, str] | None = None,
    ) -> ActionResult:
        """Call action ``event`` of ``app`` with ``input``; the result, or a raised error.

        Args:
            app: the app's tag.
            event: the action's tag.
            input: per part (``{"body": …, "query": …, "params": …, "headers": …}``) or flat,
                routed by the action's schemas (``query:name`` where names clash).
            env: the environment (default: the client's).
            cache: a cache resource's tag, or ``{"tag": …, "ttl": …, "lock": …, "stale": …}``:
                reuse a stored result for the same input. Concurrent misses on one key make
                one call; ``lock`` makes one call across processes; ``stale`` serves an expired
                result while one caller refreshes it (see docs/apps.md, "Caching").
            retries: retries after the first attempt, instead of the policy's.
            session: ``(session tag, token)``: the call is made only for a valid, live
                session (SessionInvalidError and its subclasses otherwise, before anything
                is sent). Apps have no mappings, so no field of it is read here.
            idempotency_key: sent as the ``Idempotency-Key`` header (feature steps pass
                ``<run_id>:<step_key>``), so the API can recognise a repeated call.
            max_size: the largest body in bytes, instead of the action's
                ``max_response_size`` (with ``save_to``: no limit unless given). A larger
                one raises :class:`ProviderError` without being read whole.
            save_to: ``(storage tag, key)``: stream the body into that storage resource
                instead of reading it (memory bounded by a chunk); ``result.saved`` says
                where it went and its size, ``result.body`` is ``None``. Not with ``cache``.

        Raises:
            RateLimitedError: the action's ``limits`` are reached (nothing was sent).
        """
        from ductwork.apps.runner import ActionResult

        max_size = None if max_size is None else _size(max_size)
        if save_to is not None:
            target = self._save_target(save_to, cache, env)
            return await self._save(
                app, event, input, target, env, retries, session, idempotency_key, max_size
            )
        client, action, prepared, env = await self._prepare(
            app, event, input, env, session, idempotency_key
        )
        policy = cache_policy(cache)
        if policy is None:
            return await client.run(action, prepared, retries=retries, max_size=max_size)
        fresh: list[ActionResult] = []

        async def call() -> dict[str, Any]:
            fresh.append(await client.run(action, prepared, retries=retries, max_size=max_size))
            return fresh[-1].to_dict()

        key = call_key("actions", app, event, env, data=prepared.as_dict())
        data, _ = await through_cache(self._client, policy, key, env, call)
        return fresh[0] if fresh else ActionResult.from_dict(data, cached=True)

    def stream(
        self,
        app: str,
        event: str,
        input: Mapping[str, Any] | None = None,
        *,
        env: str | None = None,
        retries: int | None = None,
        session: tuple[str, str] | None = None,
        idempotency_key: str | None = None,
        max_size: int | None = None,
        chunk_size: int | None = None,
    ) -> ActionStream:
        """Call the action and hand its body out in chunks, never whole in memory.

        ``async with dw.actions.stream(app, event, input) as response:`` sends the call (input
        validated first, retried as the policy says; a status >= 400 raises as ``run`` does),
        then ``response.status``, ``response.headers`` and ``async for chunk in response``.
        Nothing is retried once a chunk was handed out; leaving the block closes the response.
        ``max_size`` refuses a body above that many decoded bytes (default: no limit);
        ``chunk_size`` caps a chunk (default: what the network hands over, at most 64 KiB
        of a decompressed body). Other arguments as for :meth:`run`.
        """
        from ductwork.apps.body import ActionStream

        max_size = None if max_size is None else _size(max_size)
        chunk_size = None if chunk_size is None else _size(chunk_size, "chunk_size")

        async def start() -> Opened:
            client, action, prepared, _ = await self._prepare(
                app, event, input, env, session, idempotency_key
            )
            return await client.send(action, prepared, retries=retries)

        return ActionStream(
            f"app {app!r} action {event!r}", start, max_size=max_size, chunk_size=chunk_size
        )

    async def dispatch(
        self,
        app: str,
        event: str,
        input: Mapping[str, Any] | None = None,
        *,
        cache: str | Mapping[str, Any] | None = None,
        max_size: int | None = None,
        save_to: tuple[str, str] | None = None,
        **opts: Unpack[JobOptions],
    ) -> Job:
        """Run the action later as a durable job; its input is validated now, before storing.

        ``opts`` are the jobs engine's (``schedule``, ``retries``, ``dedupe_key``, ``priority``,
        ``queue``, ``timeout``, ``env``). The input must be JSON (no file bytes). ``max_size``
        and ``save_to`` as for :meth:`run` (the storage and key are checked now).
        """
        from ductwork.apps.inputs import prepare

        env = self._client.config.env_name(opts.get("env") or self._client.env)
        self.settings(app, env)
        client = self._apps.get((app, env)) or await self.client(app, env)
        prepare(client.action(event), input, env)
        target = None if save_to is None else list(self._save_target(save_to, cache, env))
        policy = cache_policy(cache)
        stored = None if policy is None else policy.model_dump(exclude_none=True)
        payload: dict[str, Any] = {
            "input": dict(input or {}),
            "cache": stored,
        }
        if max_size is not None:
            payload["max_size"] = _size(max_size)
        if target is not None:
            payload["save_to"] = target
        return await self._submit("actions.run", f"{app}:{event}", app, payload, opts)

    async def _prepare(
        self,
        app: str,
        event: str,
        input: Mapping[str, Any] | None,
        env: str | None,
        session: tuple[str, str] | None,
        idempotency_key: str | None,
    ) -> tuple[AppClient, CompiledAction, Prepared, str]:
        from ductwork.apps.inputs import prepare

        env = self._client.config.env_name(env or self._client.env)
        if session is not None:
            await self._client.sessions.bind(session, env)
        client = self._apps.get((app, env)) or await self.client(app, env)
        action = client.action(event)
        prepared = prepare(action, input, env)
        limits = self._client.config.product.resilience_plans.action_limits
        if limits and (app, event) in limits:  # a usage limit: counted before anything is sent
            from ductwork.resilience.limits import enforce

            await enforce(self._client, limits[(app, event)], dict(input or {}), env)
        if idempotency_key is not None:
            prepared.headers["Idempotency-Key"] = idempotency_key
        return client, action, prepared, env

    def _save_target(self, save_to: Any, cache: object, env: str | None) -> tuple[str, str]:
        """A checked ``(storage tag, key)``: a known storage in ``env`` and a safe key."""
        if (
            not isinstance(save_to, tuple | list)
            or len(save_to) != 2
            or not all(isinstance(part, str) for part in save_to)
        ):
            raise ValidationError(
                f"save_to must be a (storage tag, key) pair of strings, not {save_to!r}"
            )
        if cache is not None:
            raise ValidationError(
                "save_to and cache do not go together: a saved body is not cached; drop one of them"
            )
        storage, key = save_to
        check_key(key)
        self._client.resolve("storage", storage, env)
        return storage, key

    async def _save(
        self,
        app: str,
        event: str,
        input: Mapping[str, Any] | None,
        target: tuple[str, str],
        env: str | None,
        retries: int | None,
        session: tuple[str, str] | None,
        idempotency_key: str | None,
        max_size: int | None,
    ) -> ActionResult:
        """Stream the body into ``target``: the storage's own streamed save (multipart)."""
        from ductwork.apps.runner import ActionResult, Saved

        storage, key = target
        start = time.perf_counter()
        response = self.stream(
            app,
            event,
            input,
            env=env,
            retries=retries,
            session=session,
            idempotency_key=idempotency_key,
            max_size=max_size,
        )
        async with response:
            headers = response.headers
            info = await self._client.storage.save(
                storage, key, response, content_type=headers.get("content-type"), env=env
            )
        saved = Saved(storage, key, response.received, info.content_type, info.etag)
        elapsed = time.perf_counter() - start
        return ActionResult(response.status, headers, None, elapsed, response.attempts, saved=saved)

    async def close(self) -> None:
        """Close every app client's connections."""
        clients, self._apps = list(self._apps.values()), {}
        for client in clients:
            await client.aclose()


async def _execute(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    """The jobs engine's executor of ``actions.run`` runs: the call, its result as data."""
    app, _, event = target.partition(":")
    save_to = data.get("save_to")
    result = await dw.actions.run(
        app,
        event,
        data.get("input"),
        env=env,
        cache=data.get("cache"),
        idempotency_key=data.get("idempotency_key"),
        max_size=data.get("max_size"),
        save_to=None if save_to is None else (save_to[0], save_to[1]),
    )
    return result.to_dict()


def _size(value: object, name: str = "max_size") -> int:
    """A positive number of bytes, or :class:`ValidationError` naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"{name} must be a positive number of bytes, not {value!r}")
    return value


def _register_executor() -> None:
    from ductwork.engine.executors import EXECUTORS, register_executor

    if "actions.run" not in EXECUTORS:
        register_executor("actions.run", _execute)
