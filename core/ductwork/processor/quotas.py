"""``dw.quotas`` and ``dw.fallbacks``: one call, several providers (see docs/resilience.md).

A quota spreads calls over healthy providers at random by weight and switches to another on
failure; a fallback tries its providers in order. Both validate the input, enforce the usage
limit, skip providers known unhealthy (``dw.health.healthy``) or whose circuit is open, retry
each provider up to its ``retries``, and shape every answer with the provider's output
mapping, so the caller never sees which vendor answered. The loop is
:func:`ductwork.resilience.run.route`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Unpack

from ductwork.errors import NotFoundError
from ductwork.processor._base import JobOptions, Namespace

if TYPE_CHECKING:
    from ductwork.engine.spec import Job
    from ductwork.resilience.breaker import BreakerState
    from ductwork.resilience.plan import GroupPlan
    from ductwork.resilience.run import RoutedResult

__all__ = ["Fallbacks", "Quotas"]


class Quotas(Namespace):
    """Weighted, health-aware routing across providers."""

    section = "quotas"
    weighted = True

    def plan(self, tag: str) -> GroupPlan:
        """The compiled ``tag``; :class:`NotFoundError` lists the known ones."""
        plans: dict[str, GroupPlan] = getattr(
            self._client.config.product.resilience_plans, self.section
        )
        found = plans.get(tag)
        if found is None:
            known = ", ".join(sorted(plans)) or "none declared"
            raise NotFoundError(f"no {self.section[:-1]} {tag!r} ({self.section}: {known})")
        return found

    async def run(
        self,
        tag: str,
        input: Mapping[str, Any] | None = None,
        *,
        env: str | None = None,
        idempotency_key: str | None = None,
    ) -> RoutedResult:
        """Call ``tag`` with ``input``: the answer (``output``) and who gave it.

        ``idempotency_key`` goes on to every provider that accepts one (suffixed with the
        provider's name), so a repeated call can be recognised.

        Raises:
            NotFoundError: no such quota. ValidationError: the input does not match.
            RateLimitedError: the usage limit is reached (nothing was called).
            AllProvidersFailedError: every provider failed or was skipped (``failures``).
        """
        from ductwork.resilience.run import route

        plan = self.plan(tag)
        env_name = self._client.config.env_name(env or self._client.env)
        return await route(
            self._client,
            plan,
            input,
            env_name,
            weighted=self.weighted,
            idempotency_key=idempotency_key,
        )

    async def dispatch(
        self, tag: str, input: Mapping[str, Any] | None = None, **opts: Unpack[JobOptions]
    ) -> Job:
        """Run ``tag`` later as a durable job (``schedule``, ``retries``… as every dispatch)."""
        checked = self.plan(tag).validate_input(input)
        payload = {"input": checked}
        return await self._submit(f"{self.section}.run", tag, tag, payload, opts)

    async def breaker_state(self, tag: str, provider: str, env: str | None = None) -> BreakerState:
        """The circuit of provider ``provider`` of ``tag``: closed, open or half_open."""
        from ductwork.resilience.guard import guard_for

        plan = self.plan(tag)
        found = next((p for p in plan.providers if p.name == provider), None)
        if found is None:
            names = ", ".join(p.name for p in plan.providers)
            raise NotFoundError(f"{self.section}.{tag} has no provider {provider!r} ({names})")
        env_name = self._client.config.env_name(env or self._client.env)
        breaker = await guard_for(self._client).breaker(self._client, found, env_name)
        return "closed" if breaker is None else await breaker.state()


class Fallbacks(Quotas):
    """Ordered providers: the first that succeeds answers."""

    section = "fallbacks"
    weighted = False
