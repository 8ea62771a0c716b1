"""What every provider shares: options, capabilities, context, lifecycle.

A provider is a class registered under a name for one interface (:class:`Storage`,
:class:`Broker`, …). Config selects it per environment; ductwork builds its typed
``Options`` from the env's settings, constructs it with a :class:`ProviderContext`,
then ``await provider.open()`` before first use and ``await provider.close()`` at the end.
"""

from __future__ import annotations

import contextlib
from abc import ABC
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, get_args

from pydantic import BaseModel, ConfigDict
from typing_extensions import TypeVar

from ductwork._redact import redact
from ductwork.errors import DuctworkError, ProviderError, UnsupportedError

__all__ = ["Options", "Provider", "ProviderContext"]


class Options(BaseModel):
    """Base of every provider's typed options: unknown keys are refused, secrets never shown."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Values that came from ${env:…}/${secret:…} references are masked in reprs too.
        for name, value in super().__repr_args__():
            yield name, redact(value) if isinstance(value, str) else value


# Inside Provider the name ``Options`` is the subclass's options class; this alias is the base.
_BaseOptions = Options

#: A provider's options class: ``class S3Storage(Storage[S3Options])`` types ``self.options``.
OptionsT = TypeVar("OptionsT", bound=Options, default=Options, covariant=True)


@dataclass(frozen=True)
class ProviderContext:
    """Where a provider instance lives: for error messages and relative paths.

    Attributes:
        resource: the resource path, e.g. ``storage.files``.
        env: the environment slug.
        provider: the registered provider name.
        root: the folder relative paths in options resolve against (the config's folder).
        settings: resource-level settings that are not provider options (e.g. a cache's ttl).
    """

    resource: str = "adhoc"
    env: str = "dev"
    provider: str = ""
    root: Path = field(default_factory=Path.cwd)
    settings: dict[str, Any] = field(default_factory=dict)

    def resolve(self, path: str | Path) -> Path:
        """A path from options, made absolute against the config's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.root / p)


class Provider(ABC, Generic[OptionsT]):
    """Base of every provider, generic in its options class.

    Subclasses name their options class as the type argument of their interface
    (``class S3Storage(Storage[S3Options])``): it becomes ``Options`` (what config validates
    against) and the type of ``self.options``. They set ``capabilities`` (a frozenset of names
    from the interface's ``CAPABILITIES``). Everything else has a default.
    """

    kind: ClassVar[str] = ""
    CAPABILITIES: ClassVar[frozenset[str]] = frozenset()
    Options: ClassVar[type[_BaseOptions]] = _BaseOptions
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Options" not in vars(cls):  # from the type argument: Storage[S3Options]
            for base in vars(cls).get("__orig_bases__", ()):
                found = [a for a in get_args(base) if isinstance(a, type)]
                if found and issubclass(found[0], _BaseOptions):
                    cls.Options = found[0]
        # What a provider does not translate is translated at its boundary (see _boundary).
        from ductwork.providers._boundary import guard_class

        guard_class(cls)

    def __init__(
        self, options: _BaseOptions | None = None, *, context: ProviderContext | None = None
    ) -> None:
        expected = type(self).Options
        if options is not None and not isinstance(options, expected):
            raise TypeError(
                f"{type(self).__name__} takes {expected.__name__}, not {type(options).__name__}"
            )
        self._options = options if options is not None else expected()
        self.context = context or ProviderContext(provider=type(self).__name__)

    @property
    def options(self) -> OptionsT:
        """The provider's validated options, typed by its options class."""
        return self._options  # type: ignore[return-value] # checked against Options above

    @classmethod
    def from_options(cls, context: ProviderContext | None = None, **options: Any) -> Self:
        """Build a provider from keyword options (handy in scripts and tests)."""
        return cls(cls.Options(**options), context=context)

    @property
    def endpoint(self) -> str | None:
        """The address this provider talks to, with no credentials, for error messages."""
        return None

    @property
    def native(self) -> Any:
        """The underlying client, for what ductwork does not cover (an escape hatch)."""
        raise UnsupportedError(f"{type(self).__name__} exposes no native client")

    async def open(self) -> None:
        """Connect or prepare; called once before first use."""

    async def close(self) -> None:
        """Release connections; called once at the end."""

    async def ping(self) -> None:
        """Check the backend is reachable; raise :class:`ProviderError` when it is not."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def supports(self, capability: str) -> bool:
        """Whether this provider declares ``capability``."""
        return capability in self.capabilities

    def require(self, capability: str) -> None:
        """Raise :class:`UnsupportedError` unless ``capability`` is declared."""
        if capability not in self.capabilities:
            raise UnsupportedError(
                f"provider {self.context.provider or type(self).__name__!r} for "
                f"{self.context.resource} does not support {capability!r} "
                f"(it declares: {', '.join(sorted(self.capabilities)) or 'nothing'})"
            )

    def error(self, message: str, cls: type[ProviderError] = ProviderError) -> ProviderError:
        """A :class:`ProviderError` carrying this provider's resource, env, name and endpoint."""
        return cls(
            message,
            resource=self.context.resource,
            env=self.context.env,
            provider=self.context.provider or type(self).__name__,
            endpoint=self.endpoint,
        )

    @contextlib.contextmanager
    def translate(
        self, *errors: type[BaseException], message: str = "backend call failed"
    ) -> Iterator[None]:
        """Turn the listed backend exceptions into :class:`ProviderError` (chained).

        Ductwork's own errors pass through untouched.
        """
        try:
            yield
        except DuctworkError:
            raise
        except errors as exc:
            raise self.error(f"{message}: {type(exc).__name__}: {exc}") from exc
