"""Functions: Python callables registered by name, usable as ``function`` steps.

Plugins register them with the ``register_functions`` hook; the product lists modules in its
config (``modules: [myapp.functions]``) whose import registers them with :func:`function`
(or whose own ``register_functions`` hook implementation is called). A function may be sync
or async; its input (a mapping of keyword arguments) is validated against its type hints with
pydantic before it runs, so a wrong input fails the step at once with a clear error.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, get_type_hints

import pydantic

from ductwork._hints import did_you_mean
from ductwork.errors import NotFoundError, ValidationError

__all__ = ["FUNCTIONS", "call_function", "function", "register_function"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class _Function:
    name: str
    fn: Callable[..., Any]
    adapter: pydantic.TypeAdapter[Any]
    params: frozenset[str]


FUNCTIONS: dict[str, _Function] = {}


def register_function(name: str, fn: Callable[..., Any]) -> None:
    """Register ``fn`` under ``name`` (the signature is read now)."""
    hints = get_type_hints(fn)
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, default)
    model = pydantic.create_model(
        f"{name}_input", __config__=pydantic.ConfigDict(extra="forbid"), **fields
    )
    FUNCTIONS[name] = _Function(name, fn, pydantic.TypeAdapter(model), frozenset(fields))


def function(name: str | None = None) -> Callable[[F], F]:
    """Decorator: ``@function("greet")`` registers the callable under that name."""

    def wrap(fn: F) -> F:
        register_function(name or fn.__name__, fn)
        return fn

    return wrap


def find_function(name: str) -> _Function:
    """The registered function; :class:`NotFoundError` suggests the closest name."""
    _load_plugins()
    found = FUNCTIONS.get(name)
    if found is None:
        hint = did_you_mean(name, FUNCTIONS)
        raise NotFoundError(
            f"no function {name!r}{hint} (functions: {', '.join(sorted(FUNCTIONS)) or 'none'})"
        )
    return found


async def call_function(
    name: str, data: Mapping[str, Any], *, idempotency_key: str | None = None
) -> Any:
    """Validate ``data`` against the function's hints, then call it (sync ones in a thread).

    A function with an ``idempotency_key`` parameter gets the step's key there.
    """
    found = find_function(name)
    if idempotency_key is not None and "idempotency_key" in found.params:
        data = {**data, "idempotency_key": idempotency_key}
    try:
        validated = found.adapter.validate_python(dict(data))
    except pydantic.ValidationError as exc:
        from ductwork.processor._actions import problems

        raise ValidationError(f"function {name!r}: invalid input: {problems(exc)}") from None
    kwargs = {k: getattr(validated, k) for k in type(validated).model_fields}
    if inspect.iscoroutinefunction(found.fn):
        return await found.fn(**kwargs)
    return await asyncio.to_thread(found.fn, **kwargs)


_loaded = False


def _load_plugins() -> None:
    """Call every plugin's ``register_functions`` hook once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from ductwork.plugins import get_registry

    get_registry().manager.hook.register_functions(register=register_function)
