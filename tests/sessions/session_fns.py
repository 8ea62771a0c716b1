"""Functions of the session tests' feature (``modules: [session_fns]``)."""

from __future__ import annotations

from ductwork.features.functions import function


@function()
def session_greeting(user: str, plan: str) -> str:
    return f"hello {user} on {plan}"


@function()
def session_weight(user: str, plan: str) -> int:
    """Something computed from the session, without repeating it (the leak test's output)."""
    return len(user) * 100 + len(plan)
