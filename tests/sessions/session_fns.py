"""Functions of the session tests' feature (``modules: [session_fns]``)."""

from __future__ import annotations

from typing import Any

from ductwork.features.code import feature
from ductwork.features.functions import function


@function()
def session_greeting(user: str, plan: str) -> str:
    return f"hello {user} on {plan}"


@function()
def session_weight(user: str, plan: str) -> int:
    """Something computed from the session, without repeating it (the leak test's output)."""
    return len(user) * 100 + len(plan)


@feature("session_code_weight")
async def session_code_weight(ctx: Any, input: Any) -> int:
    """A code-first feature reading the session through ``ctx.session``."""
    data = ctx.session
    return int(
        await ctx.function(
            "weigh", "session_weight", {"user": data["user_id"], "plan": data["plan"]}
        )
    )
