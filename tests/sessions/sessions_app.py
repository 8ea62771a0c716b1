"""The session tests' product: a config with session tags on a given store, and its keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.sessions.tokens import keygen

# One pair of keys for the whole run, given the way a product gives them: as secrets.
KEY_1, KEY_2 = keygen(), keygen()


def product(
    url: str,
    *,
    keys: tuple[str, ...] = ("k1",),
    product_name: str = "shop",
    extra: dict[str, Any] | None = None,
    session: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A config with session tag ``users`` (and ``admins``, same keys) on the store ``url``."""
    key_list = [{"id": k, "key": f"${{secret:SESSION_KEY_{k[1:]}}}"} for k in keys]
    users = {
        "selector": "user_id",
        "data": {"user_id": "str", "plan": "str", "seats": "int?"},
        "expiry": "1h",
        "refresh_expiry": "30d",
        "keys": key_list,
        **(session or {}),
    }
    return {
        "product": product_name,
        "environments": ["dev"],
        "engine": {"dev": {"url": url}},
        "sessions": {"users": users, "admins": {**users, "revocation_cache": None}},
        **(extra or {}),
    }


def client(config: dict[str, Any], root: Path) -> Ductwork:
    return Ductwork(Config.from_dict(config, root=root), env="dev")


def with_feature(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` plus feature ``weigh``, whose step reads the session's fields."""
    step = {
        "tag": "weigh",
        "type": "function",
        "target": "session_weight",
        "input": {"user": "{{ session.user_id }}", "plan": "{{ session.plan }}"},
    }
    feature = {
        "input": {"note": "str?"},
        "sequences": [{"tag": "main", "steps": [step]}],
        "output": "{{ steps.main.weigh.output }}",
    }
    return {**config, "modules": ["session_fns"], "features": {"weigh": feature}}
