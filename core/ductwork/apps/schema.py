"""Input schemas of app actions: the shorthand types and a JSON Schema checker.

A field of an action's ``params``, ``query``, ``headers`` or ``body`` is declared either with a
shorthand type name (``str int float bool json list dict file date datetime``, ``?`` suffix for
optional) or with a JSON Schema mapping (as OpenAPI writes it; ``required: false`` at the field
level makes it optional). :func:`field_schema` turns both into JSON Schema.

:func:`check` validates a value against the subset of JSON Schema that API descriptions use —
``type`` (OpenAPI 3.1 type lists and 3.0 ``nullable``), ``enum``, ``const``, string lengths and
``pattern``, number bounds (3.0 boolean and 3.1 numeric exclusive bounds), ``multipleOf``, array
``items`` and sizes, object ``properties``/``required``/``additionalProperties``, and
``allOf``/``anyOf``/``oneOf``/``not``. ``format: binary`` accepts bytes (file uploads). Every
problem is reported with its path; values never appear in the messages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["SHORTHAND", "check", "field_schema", "is_binary"]

SHORTHAND: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "json": {},
    "list": {"type": "array"},
    "dict": {"type": "object"},
    "file": {"type": "string", "format": "binary"},
    "bytes": {"type": "string", "format": "binary"},
    "date": {"type": "string", "format": "date"},
    "datetime": {"type": "string", "format": "date-time"},
}
_PATTERNS: dict[str, re.Pattern[str]] = {}


def field_schema(spec: str | Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The JSON Schema of one declared field and whether the field is required."""
    if isinstance(spec, str):
        name = spec.strip()
        optional = name.endswith("?")
        base = name.rstrip("?")
        if base not in SHORTHAND:
            raise ValueError(f"unknown type {spec!r}; use one of {', '.join(SHORTHAND)}")
        return dict(SHORTHAND[base]), not optional
    schema = dict(spec)
    required = schema.pop("required", True)
    if not isinstance(required, bool):  # a list here is JSON Schema's own `required`
        schema["required"] = required
        required = True
    return schema, required


def is_binary(schema: Mapping[str, Any]) -> bool:
    """Whether ``schema`` describes file content (``format: binary``, or the ``file`` type)."""
    return (
        schema.get("format") in ("binary", "byte-stream")
        or schema.get("contentMediaType") == "application/octet-stream"
    )


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list | tuple)
    if kind == "object":
        return isinstance(value, Mapping)
    if kind == "null":
        return value is None
    return True


def _kind(value: Any) -> str:
    for kind in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _type_ok(kind, value):
            return kind
    return "bytes" if isinstance(value, bytes | bytearray) else type(value).__name__


def check(schema: Mapping[str, Any], value: Any, path: str, problems: list[str]) -> None:
    """Append to ``problems`` one line per way ``value`` breaks ``schema`` (paths, no values)."""
    if not schema:
        return
    for sub in schema.get("allOf", ()):
        check(sub, value, path, problems)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            matches = sum(1 for sub in schema[key] if not _errors(sub, value, path))
            if matches == 0 or (key == "oneOf" and matches > 1):
                which = "any" if key == "anyOf" else "exactly one"
                problems.append(f"{path}: does not match {which} of the allowed schemas")
    if "not" in schema and not _errors(schema["not"], value, path):
        problems.append(f"{path}: matches a schema it must not match")
    if value is None and schema.get("nullable"):
        return
    types = schema.get("type")
    if types is not None:
        allowed = [types] if isinstance(types, str) else list(types)
        if is_binary(schema) and isinstance(value, bytes | bytearray | tuple | Mapping):
            return  # file content: bytes, (name, bytes[, type]) or {filename, content, ...}
        if not any(_type_ok(t, value) for t in allowed):
            problems.append(f"{path}: expected {' or '.join(allowed)}, got {_kind(value)}")
            return
    if "enum" in schema and value not in schema["enum"]:
        shown = ", ".join(str(v) for v in schema["enum"][:10])
        problems.append(f"{path}: must be one of {shown}")
    if "const" in schema and value != schema["const"]:
        problems.append(f"{path}: must be {schema['const']!r}")
    if isinstance(value, str):
        _check_string(schema, value, path, problems)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(schema, value, path, problems)
    elif isinstance(value, list | tuple):
        _check_array(schema, value, path, problems)
    elif isinstance(value, Mapping):
        _check_object(schema, value, path, problems)


def _errors(schema: Mapping[str, Any], value: Any, path: str) -> list[str]:
    found: list[str] = []
    check(schema, value, path, found)
    return found


def _check_string(schema: Mapping[str, Any], value: str, path: str, problems: list[str]) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        problems.append(f"{path}: shorter than {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        problems.append(f"{path}: longer than {schema['maxLength']} characters")
    pattern = schema.get("pattern")
    if pattern:
        compiled = _PATTERNS.get(pattern)
        if compiled is None:
            compiled = _PATTERNS[pattern] = re.compile(pattern)
        if not compiled.search(value):
            problems.append(f"{path}: does not match pattern {pattern}")


def _check_number(schema: Mapping[str, Any], value: float, path: str, problems: list[str]) -> None:
    low, high = schema.get("minimum"), schema.get("maximum")
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if ex_low is True:  # OpenAPI 3.0: a flag on minimum
        ex_low, low = low, None
    if ex_high is True:
        ex_high, high = high, None
    if low is not None and value < low:
        problems.append(f"{path}: less than the minimum {low}")
    if high is not None and value > high:
        problems.append(f"{path}: greater than the maximum {high}")
    if isinstance(ex_low, int | float) and not isinstance(ex_low, bool) and value <= ex_low:
        problems.append(f"{path}: must be greater than {ex_low}")
    if isinstance(ex_high, int | float) and not isinstance(ex_high, bool) and value >= ex_high:
        problems.append(f"{path}: must be less than {ex_high}")
    step = schema.get("multipleOf")
    if step and (value / step) % 1:
        problems.append(f"{path}: not a multiple of {step}")


def _check_array(
    schema: Mapping[str, Any], value: list[Any] | tuple[Any, ...], path: str, problems: list[str]
) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        problems.append(f"{path}: fewer than {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        problems.append(f"{path}: more than {schema['maxItems']} items")
    if schema.get("uniqueItems") and len({repr(v) for v in value}) < len(value):
        problems.append(f"{path}: items must be unique")
    items = schema.get("items")
    if isinstance(items, Mapping):
        for i, item in enumerate(value):
            check(items, item, f"{path}[{i}]", problems)


def _check_object(
    schema: Mapping[str, Any], value: Mapping[str, Any], path: str, problems: list[str]
) -> None:
    properties: Mapping[str, Any] = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value and not properties.get(name, {}).get("readOnly"):
            problems.append(f"{path}.{name}: required field is missing")
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            check(properties[name], item, f"{path}.{name}", problems)
        elif extra is False:
            known = ", ".join(properties) or "none"
            problems.append(f"{path}.{name}: unknown field (fields: {known})")
        elif isinstance(extra, Mapping):
            check(extra, item, f"{path}.{name}", problems)
