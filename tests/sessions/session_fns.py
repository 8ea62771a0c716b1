"""Functions of the session tests' feature (``modules: [session_fns]``)."""

from __future__ import annotations

from ductwork.features.functions import function


@function()
def session_greeting(user: str, plan: str) -> str:
    return f"hello {user} on {plan}"
