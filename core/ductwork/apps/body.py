"""Response bodies in bounded memory: decoded chunk by chunk, counted, refused past a limit.

An app action's body is never read whole before it is known to fit: :func:`read_body` refuses
a ``Content-Length`` above the limit before reading anything, and otherwise counts *decoded*
bytes while reading, so an unannounced or compressed body (a gzip bomb) stops at the limit.
``gzip`` and ``deflate`` are decoded here with a bound on each output chunk (one 64 KiB network
read of zeros can inflate to 64 MiB); other encodings (``br``, ``zstd``, when their packages
are installed) go through httpx's decoders, counted per network read.

:class:`ActionStream` is ``dw.actions.stream``'s result: the call is sent (with the retry
policy) when it is entered or first read, a status >= 400 raises as ``run`` does, and the body
is handed out in chunks; nothing is retried once a chunk has been handed out.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Self

import httpx

from ductwork.errors import ConnectionFailedError, DuctworkError, ProviderError

Opened = tuple[httpx.Response, int, dict[str, Any]]
"""A sent call: its open response, the attempts it took, where (for errors)."""

__all__ = [
    "ActionStream",
    "Opened",
    "decoded_chunks",
    "read_body",
    "read_excerpt",
    "too_large",
]

CHUNK = 64 * 1024
_ZLIB = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def too_large(
    describe: str, limit: int, size: int, announced: bool, where: dict[str, Any]
) -> ProviderError:
    """The refusal of a body above ``limit``: app, action, limit and size, and what to do."""
    what = (
        f"announced a body of {size} bytes (Content-Length)"
        if announced
        else f"sent more than {limit} bytes (refused at {size} decoded bytes)"
    )
    return ProviderError(
        f"{describe} {what}, above its max_response_size of {limit} bytes; raise "
        "max_response_size on the app or the action, or read it with dw.actions.stream or "
        "save_to=(storage, key)",
        **where,
    )


def announced_size(response: httpx.Response) -> int | None:
    """The ``Content-Length`` of an unencoded body (a compressed one is counted instead).

    ``None`` for a response that has no body whatever its headers say (HEAD, 204, 304).
    """
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    length = response.headers.get("content-length")
    if encoding not in ("", "identity") or length is None or not length.strip().isdigit():
        return None
    if response.status_code in (204, 304) or response.request.method == "HEAD":
        return None
    return int(length)


async def decoded_chunks(
    response: httpx.Response, chunk_size: int | None = None
) -> AsyncIterator[bytes]:
    """The body's decoded bytes, no chunk longer than ``chunk_size`` (64 KiB by default)."""
    size = chunk_size or CHUNK
    codings = [
        c.strip().lower()
        for c in response.headers.get("content-encoding", "").split(",")
        if c.strip().lower() not in ("", "identity")
    ]
    if not codings:
        async for raw in response.aiter_raw(chunk_size):
            yield raw
        return
    if len(codings) > 1 or codings[0] not in _ZLIB:
        async for data in response.aiter_bytes(chunk_size):
            yield data
        return
    wbits = _ZLIB[codings[0]]
    decoder = zlib.decompressobj(wbits)
    seen: bytearray | None = bytearray() if wbits == zlib.MAX_WBITS else None
    async for raw in response.aiter_raw():
        pending = raw
        if seen is not None:
            seen += raw  # the first bytes, until the 2-byte zlib header is accepted or refused
        while not decoder.eof:  # until this input is consumed and no output is pending
            try:
                out = decoder.decompress(pending, size)
            except zlib.error as exc:
                if seen is not None:  # "deflate" sent as a raw stream: start again without
                    decoder, pending, seen = zlib.decompressobj(-zlib.MAX_WBITS), bytes(seen), None
                    continue
                raise httpx.DecodingError(f"could not decode {codings[0]} body: {exc}") from exc
            if seen is not None and len(seen) >= 2:
                seen = None  # the header was accepted: a zlib stream
            pending = decoder.unconsumed_tail
            if out:
                yield out
            if not pending and len(out) < size:
                break
    rest = decoder.flush()
    if rest:
        yield rest


async def limited(
    chunks: AsyncIterator[bytes], limit: int | None, refuse: Callable[[int], Exception]
) -> AsyncIterator[bytes]:
    """``chunks`` until more than ``limit`` bytes came: then ``refuse(count)`` is raised."""
    count = 0
    async for chunk in chunks:
        count += len(chunk)
        if limit is not None and count > limit:
            raise refuse(count)
        yield chunk


async def read_body(
    response: httpx.Response, limit: int, describe: str, where: dict[str, Any]
) -> bytes:
    """The whole decoded body, refused (before reading when announced) above ``limit``."""
    size = announced_size(response)
    if size is not None:
        if size > limit:
            raise too_large(describe, limit, size, True, where)
        return await response.aread()  # unencoded and framed by its length: at most `size`
    body = bytearray()
    chunks = limited(
        decoded_chunks(response), limit, lambda n: too_large(describe, limit, n, False, where)
    )
    async for chunk in chunks:
        body += chunk
    return bytes(body)


async def read_excerpt(response: httpx.Response, chars: int) -> str:
    """The body's first ``chars`` characters or so (an error body is never read whole)."""
    body = bytearray()
    try:
        async for chunk in decoded_chunks(response):
            body += chunk
            if len(body) >= chars * 4:
                break
    except httpx.HTTPError:
        pass  # the status is the answer; an error body cut short is still an excerpt
    return bytes(body).decode(response.charset_encoding or "utf-8", "replace")[:chars]


class ActionStream:
    """A streamed action call: ``async with`` it, then ``async for chunk in it``.

    ``status``, ``headers`` and ``attempts`` are set once it is open (entered, or first read);
    ``received`` counts the decoded bytes handed out. Leaving the ``async with`` block (or
    reading to the end, an error, a cancellation, :meth:`aclose`) closes the response.
    """

    def __init__(
        self,
        describe: str,
        start: Callable[[], Awaitable[Opened]],
        *,
        max_size: int | None = None,
        chunk_size: int | None = None,
    ) -> None:
        self._describe = describe
        self._start = start
        self._max_size = max_size
        self._chunk_size = chunk_size
        self._response: httpx.Response | None = None
        self._chunks: AsyncIterator[bytes] | None = None
        self._closed = False
        self._where: dict[str, Any] = {}
        self.attempts = 0
        self.received = 0

    @property
    def status(self) -> int:
        """The response's status (after the retries the policy allows; always < 400)."""
        return self._opened().status_code

    @property
    def headers(self) -> dict[str, str]:
        """The response's headers, lower-case names."""
        return dict(self._opened().headers.items())

    async def open(self) -> Self:
        """Send the call (retrying as the policy says) and check its status; idempotent."""
        if self._closed:
            raise DuctworkError(f"{self._describe}: this stream is closed")
        if self._response is None:
            self._response, self.attempts, self._where = await self._start()
            limit = self._max_size
            size = announced_size(self._response)
            if limit is not None and size is not None and size > limit:
                await self.aclose()
                raise self._refuse(size, True)
            self._chunks = limited(
                decoded_chunks(self._response, self._chunk_size),
                limit,
                lambda n: self._refuse(n, False),
            )
        return self

    async def aclose(self) -> None:
        """Close the response (the connection goes back to the pool or is dropped)."""
        self._closed = True
        chunks, self._chunks = self._chunks, None
        if chunks is not None:
            await chunks.aclose()  # type: ignore[attr-defined]
        if self._response is not None:
            await self._response.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._chunks is None:
            if self._closed:
                raise StopAsyncIteration
            await self.open()
        assert self._chunks is not None
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            await self.aclose()
            raise
        except httpx.HTTPError as exc:
            await self.aclose()
            raise ConnectionFailedError(
                f"{self._describe} failed after {self.received} bytes of its body "
                f"({type(exc).__name__}); a stream is not retried once a chunk was handed out",
                **self._where,
            ) from exc
        except BaseException:
            await self.aclose()
            raise
        self.received += len(chunk)
        return chunk

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _opened(self) -> httpx.Response:
        if self._response is None:
            raise DuctworkError(
                f"{self._describe}: the stream is not open yet; enter it "
                "('async with') or read a chunk first"
            )
        return self._response

    def _refuse(self, size: int, announced: bool) -> ProviderError:
        assert self._max_size is not None
        return too_large(self._describe, self._max_size, size, announced, self._where)
