"""Route an action's input to path params, query, headers and body, and validate it.

Input may be given per part (``{"body": {...}, "query": {...}}``) or flat (``{"to": ...,
"limit": 10}``), each flat name routed to the one part that declares it. A name declared by two
parts must be written with its part as a prefix: ``headers:X-Trace``, ``query:id``. A key
``body``, ``query``, ``params`` or ``headers`` holding a mapping is a part, unless the action
declares a field of that very name. Header names match case-insensitively.

Every problem is collected before anything is sent, so one :class:`ValidationError` lists each
wrong field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ductwork._hints import did_you_mean
from ductwork.apps.models import AppAction
from ductwork.apps.schema import check, field_schema, is_binary
from ductwork.errors import ValidationError

__all__ = ["PARTS", "CompiledAction", "FieldInfo", "Prepared", "compile_action", "prepare"]

PARTS = ("params", "query", "headers", "body")
_MISSING: Any = object()


@dataclass(frozen=True)
class FieldInfo:
    """One declared input field."""

    part: str
    name: str
    schema: dict[str, Any]
    required: bool
    binary: bool


@dataclass(frozen=True)
class CompiledAction:
    """An action ready to take input: its fields by part and by flat name."""

    app: str
    tag: str
    spec: AppAction
    fields: dict[str, dict[str, FieldInfo]]
    by_name: dict[str, list[FieldInfo]]
    provided: frozenset[tuple[str, str]] = frozenset()

    def describe(self) -> str:
        """``app 'x' action 'y'``."""
        return f"app {self.app!r} action {self.tag!r}"


@dataclass
class Prepared:
    """Validated input, split into the request's parts."""

    params: dict[str, Any] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, Any] = field(default_factory=dict)
    body: Any = None

    def as_dict(self) -> dict[str, Any]:
        """The parts as one mapping (cache keys, logs)."""
        return {
            "params": self.params,
            "query": self.query,
            "headers": self.headers,
            "body": self.body,
        }


def compile_action(
    app: str, tag: str, spec: AppAction, provided: frozenset[tuple[str, str]] = frozenset()
) -> CompiledAction:
    """Index ``spec``'s fields; ``provided`` are (part, name) pairs the app's auth fills in."""
    declared: dict[str, dict[str, Any]] = {
        "params": spec.path_params(),
        "query": spec.query,
        "headers": spec.headers,
        "body": spec.body or {},
    }
    fields: dict[str, dict[str, FieldInfo]] = {}
    by_name: dict[str, list[FieldInfo]] = {}
    for part, specs in declared.items():
        fields[part] = {}
        for name, declared_spec in specs.items():
            schema, required = field_schema(declared_spec)
            key = name.lower() if part == "headers" else name
            required = required and (part, key) not in provided
            info = FieldInfo(part, name, schema, required, is_binary(schema))
            fields[part][key] = info
            by_name.setdefault(name, []).append(info)
            if part == "headers" and key != name:
                by_name.setdefault(key, []).append(info)
    return CompiledAction(app, tag, spec, fields, by_name, provided)


def prepare(action: CompiledAction, input: Mapping[str, Any] | None, env: str) -> Prepared:
    """Route and validate ``input``; :class:`ValidationError` lists every wrong field."""
    out = Prepared()
    problems: list[str] = []
    given: dict[str, dict[str, Any]] = {"params": {}, "query": {}, "headers": {}, "body": {}}
    whole_body: Any = _MISSING
    spec = action.spec
    out.body = {} if spec.body is not None else None
    if input is not None and not isinstance(input, Mapping):
        raise ValidationError(f"{action.describe()} (env {env!r}): input must be a mapping")
    for key, value in (input or {}).items():
        if key in PARTS and key not in action.by_name:
            if key == "body" and spec.body_schema is not None:
                whole_body = value
                continue
            if isinstance(value, Mapping):
                for name, item in value.items():
                    _assign(action, given, key, name, item, problems)
                continue
        part, sep, name = key.partition(":")
        if sep and part in PARTS:
            _assign(action, given, part, name, value, problems)
            continue
        matches = action.by_name.get(key) or action.by_name.get(key.lower())
        if not matches:
            known = sorted(_names(action))
            hint = did_you_mean(key, known)
            problems.append(f"{key}: unknown input{hint} (fields: {', '.join(known) or 'none'})")
        elif len({m.part for m in matches}) > 1:
            parts = " or ".join(f"{m.part}:{key}" for m in matches)
            problems.append(f"{key}: declared in several parts; write {parts}")
        else:
            _assign(action, given, matches[0].part, matches[0].name, value, problems)
    for part in PARTS:
        values = given[part]
        for key, info in action.fields[part].items():
            value = values.get(key, _MISSING)
            if value is _MISSING or (value is None and not _nullable(info.schema)):
                if value is _MISSING and info.required:
                    problems.append(f"{part}.{info.name}: required field is missing")
                elif value is None:
                    problems.append(f"{part}.{info.name}: must not be null")
                continue
            check(info.schema, value, f"{part}.{info.name}", problems)
            getattr(out, part)[info.name] = value
    if spec.body_schema is not None and whole_body is not _MISSING:
        check(spec.body_schema, whole_body, "body", problems)
        out.body = whole_body
    if problems:
        listing = "\n  - ".join(problems)
        raise ValidationError(
            f"{action.describe()} (env {env!r}): invalid input, nothing was sent:\n  - {listing}"
        )
    return out


def _names(action: CompiledAction) -> set[str]:
    return {info.name for part in action.fields.values() for info in part.values()}


def _nullable(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    return (
        bool(schema.get("nullable")) or kind is None or (isinstance(kind, list) and "null" in kind)
    )


def _assign(
    action: CompiledAction,
    given: dict[str, dict[str, Any]],
    part: str,
    name: str,
    value: Any,
    problems: list[str],
) -> None:
    key = name.lower() if part == "headers" else name
    if key not in action.fields[part]:
        if part == "body" and action.spec.body is None and action.spec.body_schema is None:
            problems.append(f"body.{name}: this action takes no body")
            return
        known = sorted(info.name for info in action.fields[part].values())
        hint = did_you_mean(name, known)
        problems.append(
            f"{part}.{name}: unknown field{hint} ({part}: {', '.join(known) or 'none'})"
        )
        return
    if key in given[part]:
        problems.append(f"{part}.{name}: given twice")
        return
    given[part][key] = value
