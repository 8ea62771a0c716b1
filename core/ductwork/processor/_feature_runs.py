"""What ``dw.features`` shows and finds: runs, features by tag, a run's merged timeline.

A run as users see it (:class:`FeatureRun`), the feature behind a tag (plans from config,
code-first features from the configured modules and plugins), and the timeline merged from a
run's events and its stored steps.
"""

from __future__ import annotations

import builtins
import importlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ductwork._hints import did_you_mean
from ductwork.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    from ductwork.client import Ductwork
    from ductwork.features.code import CodeFeature
    from ductwork.features.plan import FeaturePlan

__all__ = [
    "FeatureRun",
    "find_feature",
    "load_modules",
    "merged_timeline",
    "step_start",
    "to_datetime",
    "written_order",
]


@dataclass(frozen=True)
class FeatureRun:
    """A feature run: its id, feature, status; ``output`` once it succeeded."""

    run_id: str
    tag: str
    status: str
    env: str
    output: Any = None
    error: str | None = None
    created: bool = True
    steps: builtins.list[dict[str, Any]] = field(default_factory=builtins.list)
    timeline: builtins.list[dict[str, Any]] = field(default_factory=builtins.list)
    input: Any = None
    attempt: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    forked_from: str | None = None
    parent_run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly (datetimes as ISO 8601)."""

        def conv(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, dict):
                return {k: conv(v) for k, v in value.items()}
            if isinstance(value, builtins.list):
                return [conv(v) for v in value]
            return value

        return {name: conv(getattr(self, name)) for name in self.__dataclass_fields__}


_modules_loaded: set[str] = set()


def load_modules(dw: Ductwork) -> None:
    """Import the config's ``modules`` and call the ``register_features`` hooks (once each)."""
    from ductwork.features.code import register_feature
    from ductwork.features.functions import _load_plugins
    from ductwork.plugins import get_registry

    if "" not in _modules_loaded:
        _modules_loaded.add("")
        _load_plugins()
        get_registry().manager.hook.register_features(register=register_feature)
    for name in dw.config.product.modules:
        if name not in _modules_loaded:
            _modules_loaded.add(name)
            importlib.import_module(name)


def find_feature(dw: Ductwork, tag: str) -> FeaturePlan | CodeFeature:
    """The declarative plan or code-first feature ``tag``; :class:`NotFoundError` otherwise."""
    from ductwork.features.code import CODE_FEATURES

    load_modules(dw)  # functions and code-first features (once)
    plans = dw.config.product.feature_plans
    if tag in plans:
        return plans[tag]  # type: ignore[no-any-return]
    if tag in CODE_FEATURES:
        return CODE_FEATURES[tag]
    known = sorted({*plans, *CODE_FEATURES})
    hint = did_you_mean(tag, known)
    raise NotFoundError(f"no feature {tag!r}{hint} (features: {', '.join(known) or 'none'})")


def to_datetime(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, UTC)


def written_order(dialect: str) -> Any:
    """Steps started in the same millisecond, in the order their rows were written.

    Steps take well under a millisecond, so ``started_at`` ties; SQLite's ``rowid`` is the
    first write's order, Postgres's ``xmin`` the last write's transaction (a sequential step
    commits after the one before it).
    """
    from sqlalchemy import literal_column

    return literal_column("rowid" if dialect == "sqlite" else "xmin::text::bigint")


_FIRST = ("enqueued", "started", "resume", "woke", "signal")


def merged_timeline(
    events: builtins.list[dict[str, Any]], steps: builtins.list[dict[str, Any]]
) -> builtins.list[dict[str, Any]]:
    """The run's events with each stored step's outcome, in time order.

    A step's checkpoint row is its record (no event row is written for it).
    """
    merged = [(e["at"], 0 if e["event"] in _FIRST else 2, e) for e in events]
    for s in steps:
        at = s["finished_at"] or s["started_at"]
        detail = s["key"] if not s["error"] else f"{s['key']}: {s['error']}"
        if s["status"] == "waiting":
            detail += f" (signal {s['signal']!r})" if s["signal"] else " (sleep)"
        step_event = {
            "at": at,
            "event": f"step_{s['status']}",
            "attempt": s["attempts"],
            "worker": None,
            "detail": detail,
        }
        merged.append((at, 1, step_event))
    merged.sort(key=lambda item: (item[0], item[1]))
    return [e for *_, e in merged]


def step_start(old: FeatureRun, key: str) -> datetime:
    for s in old.steps:
        if s["key"] == key and s["started_at"] is not None:
            started: datetime = s["started_at"]
            return started
    known = ", ".join(s["key"] for s in old.steps) or "none stored"
    raise ValidationError(f"run {old.run_id} has no stored step {key!r} (steps: {known})")
