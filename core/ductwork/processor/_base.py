"""What every namespace shares: the client, typed provider lookup, handing jobs to the engine."""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from ductwork._json import compact
from ductwork.errors import UnsupportedError, ValidationError
from ductwork.providers.base import Provider

if TYPE_CHECKING:
    from ductwork.client import Ductwork
    from ductwork.engine.spec import Job, RetryPolicy

P = TypeVar("P", bound=Provider)


class JobOptions(TypedDict, total=False):
    """What every ``dispatch`` takes besides the operation (see :meth:`Jobs.submit`)."""

    schedule: Mapping[str, Any] | None
    retries: int | Mapping[str, Any] | RetryPolicy | None
    dedupe_key: str | None
    priority: int
    queue: str
    timeout: float | None
    env: str | None


def json_text(value: Any, what: str) -> str:
    """``value`` as compact JSON text; :class:`ValidationError` naming ``what`` when it cannot be.

    Refused: objects JSON has no form for, ints past Python's digit limit, nesting too deep.
    """
    try:
        return compact(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(f"{what} is not JSON-serialisable: {exc}") from None


def to_json(value: Any, what: str) -> bytes:
    """``value`` as compact JSON bytes (:func:`json_text`, encoded)."""
    return json_text(value, what).encode()


def json_payload(value: Any, what: str) -> Any:
    """``value`` if it round-trips through JSON (a job's input is stored as JSON)."""
    to_json(value, f"{what} (a job's input is stored as JSON)")
    return value


class Group:
    """A set of calls the sync facade wraps (a namespace, or a namespace's sub-namespace)."""


class Namespace(Group):
    """Base of ``dw.storage``, ``dw.events`` and the others."""

    section: str = ""

    def __init__(self, client: Ductwork) -> None:
        self._client = client

    async def _provider(self, tag: str, env: str | None, cls: type[P]) -> P:
        provider = await self._client.provider(self.section, tag, env)
        assert isinstance(provider, cls)
        return provider

    async def dispatch(self, *args: Any, **kwargs: Any) -> Any:
        """Namespaces without a jobs-engine executor refuse dispatch clearly."""
        raise UnsupportedError(
            f"{self.section}.dispatch is not supported by the jobs engine yet; "
            "call the operation directly instead"
        )

    def _checked(self, tag: str, env: str | None) -> str:
        """Refuse an unknown tag, or one with no valid settings in the env, before storing."""
        resolved = self._client.resolve(self.section, tag, env)
        return resolved.env

    def _submit(
        self, kind: str, target: str, tag: str, payload: Mapping[str, Any], opts: JobOptions
    ) -> Coroutine[Any, Any, Job]:
        """Hand a checked operation to the jobs engine (``dw.jobs``): its call, to await.

        A plain function, not a coroutine of its own: a dispatch pays no extra frame for it.
        """
        return self._client.jobs.submit(kind, target, tag, payload, **opts)
