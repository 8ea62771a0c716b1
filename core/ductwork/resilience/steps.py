"""The ``quota`` and ``fallback`` step types and the jobs engine's executors behind them.

A feature step ``{type: quota, target: sms, input: {…}}`` (and ``dispatch`` of either) runs
as a job of kind ``quotas.run`` / ``fallbacks.run``, whose output is the routed result
(``output``, ``provider``, ``latency``, ``was_healthy``, ``retries_used``,
``providers_tried``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ductwork.engine.executors import EXECUTORS, register_executor
from ductwork.features.types import Check, StepType, ToJob, register_step_type

if TYPE_CHECKING:
    from ductwork.client import Ductwork
    from ductwork.config.models import Product
    from ductwork.features.models import StepDef

__all__ = ["register"]


def _check(section: str) -> Check:
    def check(spec: StepDef, product: Product) -> str | None:
        known = getattr(product, section)
        if spec.target in known:
            return None
        names = ", ".join(sorted(known)) or "none"
        return f"no {section[:-1]} {spec.target!r} ({section}: {names})"

    return check


def _job(section: str) -> ToJob:
    def job(spec: StepDef, target: str, data: Mapping[str, Any], key: str) -> tuple[str, str, Any]:
        return f"{section}.run", target, {"input": dict(data), "idempotency_key": key}

    return job


async def _run_quota(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    key = data.get("idempotency_key")
    result = await dw.quotas.run(target, data.get("input"), env=env, idempotency_key=key)
    return result.to_dict()


async def _run_fallback(dw: Ductwork, target: str, data: dict[str, Any], env: str) -> Any:
    key = data.get("idempotency_key")
    result = await dw.fallbacks.run(target, data.get("input"), env=env, idempotency_key=key)
    return result.to_dict()


def register() -> None:
    """Register the step types and executors (idempotent)."""
    if "quotas.run" in EXECUTORS:
        return
    register_executor("quotas.run", _run_quota)
    register_executor("fallbacks.run", _run_fallback)
    register_step_type(StepType("quota", _check("quotas"), _job("quotas")))
    register_step_type(StepType("fallback", _check("fallbacks"), _job("fallbacks")))
