"""Usage limits: at most ``max`` calls per ``per`` seconds for each value of ``key``.

A fixed window: the counter of window ``floor(now / per)`` for the rendered key is
incremented atomically (``incr`` with a TTL — Redis ``INCR``/``PEXPIRE`` on a shared cache,
the embedded cache's lock otherwise); the call whose count passes ``max`` is refused with
:class:`~ductwork.errors.RateLimitedError` before any provider is called, its ``retry_after``
the seconds to the window's end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ductwork.errors import RateLimitedError

if TYPE_CHECKING:
    from ductwork.client import Ductwork
    from ductwork.resilience.plan import LimitPlan

__all__ = ["enforce"]


async def enforce(dw: Ductwork, plan: LimitPlan, data: Mapping[str, Any], env: str) -> None:
    """Count one call against ``plan``; :class:`RateLimitedError` when over the limit."""
    from ductwork.resilience.guard import guard_for

    guard = guard_for(dw)
    context = {"input": data, "env": env, "product": dw.product}
    key = str(plan.key.render(context, where=f"{plan.where}.key"))
    spec = plan.spec
    now = guard.clock()
    window = int(now // spec.per)
    cache, prefix = await guard.cache(dw, spec.cache, env)
    count = await cache.incr(f"{prefix}limit:{plan.where}:{key}:{window}", ttl=spec.per)
    if count > spec.max:
        retry_after = max(0.0, (window + 1) * spec.per - now)
        raise RateLimitedError(
            f"{plan.where}: the limit of {spec.max} call(s) per {spec.per:g}s is reached for "
            f"this key; retry after {retry_after:.3g}s",
            retry_after=retry_after,
            limit=plan.where,
        )
