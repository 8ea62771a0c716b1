"""What database and graph actions share: finding an action by tag, validating its input.

An action declares its input as ``name: type`` (``str int float bool json bytes date datetime
list dict``, ``?`` for optional). Input is validated before anything runs; unknown names are
refused; every parameter the query uses must be declared.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import pydantic

from ductwork._hints import did_you_mean
from ductwork.errors import ConfigError, NotFoundError, TooManyRowsError, ValidationError

if TYPE_CHECKING:
    from ductwork.providers.base import Provider

__all__ = [
    "CYPHER_PARAMETER",
    "SQL_PARAMETER",
    "ActionInputs",
    "query_parameters",
    "rows_within",
    "too_many_rows",
]

SQL_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")  # :name, not ::cast
CYPHER_PARAMETER = re.compile(r"\$([A-Za-z_]\w*)")
_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "bytes": bytes,
    "date": dt.date,
    "datetime": dt.datetime,
    "list": list,
    "dict": dict,
    "json": Any,
}


class ActionSpec(Protocol):
    """The part of an action definition validation needs."""

    @property
    def query(self) -> str: ...

    @property
    def input(self) -> dict[str, str]: ...


A = TypeVar("A", bound=ActionSpec)


def query_parameters(query: str, pattern: re.Pattern[str] = SQL_PARAMETER) -> set[str]:
    """The parameter names a query uses."""
    return set(pattern.findall(query))


def problems(exc: pydantic.ValidationError, root: str = "input") -> str:
    """A pydantic error as ``field: message; …`` (``root`` names the whole value)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or root}: {e['msg']}" for e in exc.errors()
    )


def _input_model(name: str, spec: Mapping[str, str]) -> type[pydantic.BaseModel]:
    fields: dict[str, Any] = {}
    for param, type_name in spec.items():
        py = _TYPES[type_name.rstrip("?")]
        fields[param] = (py | None, None) if type_name.endswith("?") else (py, ...)
    return pydantic.create_model(
        f"{name}_input", __config__=pydantic.ConfigDict(extra="forbid"), **fields
    )


class ActionInputs(Generic[A]):
    """Validates and binds action input for one kind of resource (``database`` or ``graph``)."""

    def __init__(
        self, kind: str, pattern: re.Pattern[str], *, json_collections: bool = True
    ) -> None:
        self.kind = kind
        self.pattern = pattern
        # SQL drivers take collections as JSON text; Cypher takes lists and maps natively.
        self.json_collections = json_collections
        self._models: dict[tuple[str, str], type[pydantic.BaseModel]] = {}

    def prepare(
        self,
        resource: str,
        action: str,
        actions: Mapping[str, A],
        input: Mapping[str, Any] | None,
        env: str,
    ) -> tuple[A, dict[str, Any]]:
        """The action and its validated, bindable parameters; errors name resource/action/env."""
        where = f"{self.kind} {resource!r} action {action!r} (env {env!r})"
        spec = actions.get(action)
        if spec is None:
            hint = did_you_mean(action, actions)
            raise NotFoundError(
                f"{self.kind} {resource!r} (env {env!r}) has no action {action!r}{hint} "
                f"(actions: {', '.join(sorted(actions)) or 'none'})"
            )
        undeclared = query_parameters(spec.query, self.pattern) - set(spec.input)
        if undeclared:
            raise ConfigError(
                f"{where}: the query uses {', '.join(sorted(undeclared))}, which its input "
                "does not declare"
            )
        model = self._models.get((resource, action))
        if model is None:
            model = self._models[(resource, action)] = _input_model(action, spec.input)
        try:
            validated = model.model_validate(dict(input or {}))
        except pydantic.ValidationError as exc:
            raise ValidationError(f"{where}: invalid input: {problems(exc)}") from None
        params = {n: self._bindable(getattr(validated, n), t) for n, t in spec.input.items()}
        return spec, params

    def _bindable(self, value: Any, type_name: str) -> Any:
        if value is None:
            return None
        base = type_name.rstrip("?")
        if base in ("json", "list", "dict") and self.json_collections:
            return json.dumps(value)
        if base in ("date", "datetime"):
            return value.isoformat()
        return value


def too_many_rows(
    provider: Provider, kind: str, name: str, action: str, limit: int
) -> TooManyRowsError:
    """The error for an action whose result passed ``max_rows``: names resource, action, limit."""
    context = provider.context
    where = f"{kind} {name!r} action {action!r} (env {context.env!r})"
    return TooManyRowsError(
        f"{where} returned more than max_rows={limit} rows: narrow the query, raise max_rows "
        "in the action's config, or read the rows with stream()",
        limit=limit,
        resource=context.resource,
        env=context.env,
        provider=context.provider or type(provider).__name__,
        endpoint=provider.endpoint,
    )


async def rows_within(
    batches: AsyncGenerator[list[dict[str, Any]], None],
    limit: int,
    refuse: Callable[[], TooManyRowsError],
) -> list[dict[str, Any]]:
    """Every row of ``batches``; ``refuse()`` is raised as soon as there are more than ``limit``.

    The batches are closed then, so a cursor behind them reads no further.
    """
    rows: list[dict[str, Any]] = []
    async with aclosing(batches):
        async for batch in batches:
            rows.extend(batch)
            if len(rows) > limit:
                raise refuse()
    return rows
