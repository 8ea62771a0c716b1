"""The net under every provider: what escapes one untranslated becomes a ``ProviderError``.

Providers translate their backend's exceptions themselves (:meth:`Provider.translate`). This is
for what they miss, a third-party plugin's ``sqlite3.OperationalError`` from ``open()`` say: it
reaches the caller as a :class:`~ductwork.errors.ProviderError` naming resource, env, provider
and the plugin's distribution, the original chained as ``__cause__``.

Wrapping happens once, when a provider class is defined (:meth:`Provider.__init_subclass__`):
each interface method the class implements is replaced by a guarded one. No proxy and no closure
is made per call, so a call costs one extra frame. ``DuctworkError`` passes untouched, and so do
``asyncio.CancelledError``, ``KeyboardInterrupt`` and every other ``BaseException`` that is not
an ``Exception``.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import sys
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from types import FunctionType, TracebackType
from typing import TYPE_CHECKING, Any

from ductwork.errors import DuctworkError, ProviderError

if TYPE_CHECKING:
    from ductwork.providers.base import Provider

__all__ = ["escaped", "guard_class"]

# Lifecycle methods every provider may define besides its interface's (construction included).
_LIFECYCLE = frozenset({"__init__", "open", "close", "ping"})
_GUARDED = "__ductwork_guarded__"


def _is_interface(cls: type) -> bool:
    """``Storage``, ``Broker``, … : the classes in ``ductwork.providers`` that name a kind."""
    return bool(vars(cls).get("kind")) and cls.__module__.startswith("ductwork.providers.")


def _interface_names(cls: type) -> frozenset[str] | None:
    """Public methods of ``cls``'s interface; ``None`` when ``cls`` is an interface itself."""
    if _is_interface(cls):
        return None  # its defaults call guarded methods
    names = set(_LIFECYCLE)
    for base in cls.__mro__[1:]:
        if _is_interface(base):
            names.update(
                n for n, v in vars(base).items() if not n.startswith("_") and inspect.isfunction(v)
            )
    return frozenset(names)


def _takes_streams(cls: type, name: str) -> bool:
    """Whether the interface's ``name`` takes an iterable of the caller's (``Storage.save``).

    What the caller's own iterator raises while the provider reads it is the caller's error,
    not the provider's: such methods mark it so that it passes as it is.
    """
    for base in cls.__mro__:
        fn = vars(base).get(name)
        if not _is_interface(base) or not inspect.isfunction(fn):
            continue
        module = sys.modules.get(fn.__module__)
        for param, annotation in fn.__annotations__.items():
            text = annotation if isinstance(annotation, str) else repr(annotation)
            alias = getattr(module, text, None) if text.isidentifier() else None
            if param != "return" and "Iterable" in f"{text} {alias!r}":
                return True
    return False


def guard_class(cls: type[Provider]) -> None:
    """Wrap the interface methods ``cls`` defines itself (once, at class creation)."""
    names = _interface_names(cls)
    if names is None:
        return
    for name in names:
        fn = vars(cls).get(name)
        if isinstance(fn, FunctionType) and not getattr(fn, _GUARDED, False):
            setattr(cls, name, _guarded(fn, name, streams=_takes_streams(cls, name)))


def _guarded(fn: FunctionType, name: str, *, streams: bool = False) -> Callable[..., Any]:
    wrapper: Callable[..., Any]
    if streams and inspect.iscoroutinefunction(fn):

        async def wrapper(self: Provider, *args: Any, **kwargs: Any) -> Any:
            own: list[BaseException] = []  # what the caller's iterables raised
            args = tuple(_marked(a, own) for a in args)
            kwargs = {k: _marked(v, own) for k, v in kwargs.items()}
            try:
                return await fn(self, *args, **kwargs)
            except DuctworkError:
                raise
            except Exception as exc:
                if any(exc is mine for mine in own):
                    raise
                raise escaped(self, name, exc) from exc

    elif inspect.iscoroutinefunction(fn):

        async def wrapper(self: Provider, *args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(self, *args, **kwargs)
            except DuctworkError:
                raise
            except Exception as exc:
                raise escaped(self, name, exc) from exc

    elif inspect.isasyncgenfunction(fn):

        def wrapper(self: Provider, *args: Any, **kwargs: Any) -> Any:
            return _iterate(self, name, fn(self, *args, **kwargs))

    else:

        def wrapper(self: Provider, *args: Any, **kwargs: Any) -> Any:
            try:
                result = fn(self, *args, **kwargs)
            except DuctworkError:
                raise
            except Exception as exc:  # __init__ may fail before it stored its context
                raise escaped(self, name, exc, kwargs.get("context")) from exc
            if hasattr(result, "__aenter__"):  # transaction(), lock()
                return _GuardedContext(self, name, result)
            if hasattr(result, "__anext__"):  # stream() written as a plain def
                return _iterate(self, name, result)
            return result

    functools.update_wrapper(wrapper, fn)
    setattr(wrapper, _GUARDED, True)
    return wrapper


def _marked(value: Any, own: list[BaseException]) -> Any:
    """``value``, or for a caller's iterator one that records what it raises in ``own``."""
    if hasattr(value, "__aiter__"):
        return _marking_async(value, own)
    if hasattr(value, "__next__"):  # a generator; lists and bytes cannot raise while iterated
        return _marking(value, own)
    return value


async def _marking_async(items: AsyncIterable[Any], own: list[BaseException]) -> AsyncIterator[Any]:
    try:
        async for item in items:
            yield item
    except Exception as exc:
        own.append(exc)
        raise
    finally:  # the provider stopped early: close the caller's iterator as reading it would
        close = getattr(items, "aclose", None)
        if close is not None:
            await close()


def _marking(items: Iterator[Any], own: list[BaseException]) -> Iterator[Any]:
    try:
        yield from items
    except Exception as exc:
        own.append(exc)
        raise


async def _iterate(provider: Provider, name: str, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
    try:
        while True:
            try:
                item = await anext(items)
            except StopAsyncIteration:
                return
            except DuctworkError:
                raise
            except Exception as exc:
                raise escaped(provider, name, exc) from exc
            yield item
    finally:
        close = getattr(items, "aclose", None)
        if close is not None:
            await close()


class _GuardedContext:
    """An async context manager from a provider whose own failures are translated.

    An exception raised by the caller's block and re-raised by the provider's ``__aexit__`` is
    the caller's and passes as it is.
    """

    __slots__ = ("_cm", "_name", "_provider")

    def __init__(self, provider: Provider, name: str, cm: Any) -> None:
        self._provider, self._name, self._cm = provider, name, cm

    async def __aenter__(self) -> Any:
        try:
            return await self._cm.__aenter__()
        except DuctworkError:
            raise
        except Exception as exc:
            raise escaped(self._provider, self._name, exc) from exc

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        try:
            return bool(await self._cm.__aexit__(kind, exc, tb))
        except DuctworkError:
            raise
        except Exception as raised:
            if raised is exc or (exc is not None and raised.__cause__ is exc):
                raise  # the caller's own error (or the provider's wrapping of it) goes on
            raise escaped(self._provider, self._name, raised) from raised


def escaped(
    provider: Provider, method: str, exc: BaseException, context: Any = None
) -> ProviderError:
    """The :class:`ProviderError` for ``exc``, which ``provider.method()`` did not translate."""
    cls = type(provider)
    context = getattr(provider, "context", None) or context
    name = (getattr(context, "provider", "") or cls.__name__) if context else cls.__name__
    try:
        endpoint = provider.endpoint
    except Exception:  # the failure may be why the endpoint cannot be told either
        endpoint = None
    origin = _distribution(cls)
    return ProviderError(
        f"{cls.kind} provider {name!r} ({cls.__module__}.{cls.__qualname__}) let an "
        f"untranslated {type(exc).__name__} escape {method}(): {exc}; the original is chained "
        "as __cause__; report it to the plugin's maintainers",
        resource=getattr(context, "resource", None),
        env=getattr(context, "env", None),
        provider=name,
        endpoint=endpoint,
        distribution=origin,
    )


def _distribution(cls: type) -> str:
    """``"ductwork-foo 1.2"``: the distribution that registered (or ships) ``cls``."""
    from ductwork.plugins import get_registry

    try:
        entry = get_registry().entry_of(cls)
    except Exception:  # a broken registry must not hide the error being reported
        entry = None
    if entry is not None:
        dist = entry.distribution or f"plugin {entry.plugin}"
        return f"{dist} {entry.version}" if entry.version else dist
    top = cls.__module__.partition(".")[0]
    dists = importlib.metadata.packages_distributions().get(top)
    if dists:
        version = _version(dists[0])
        return f"{dists[0]} {version}" if version else dists[0]
    return f"module {cls.__module__}"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
