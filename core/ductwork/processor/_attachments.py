"""Attachments of configured email messages, read from storage resources, bounded in size.

A message's ``attachments`` name a storage tag (checked when the config loads) and a key and
file name (templates, rendered with the send's data). Rendering checks the key
(:func:`~ductwork.providers.storage.check_key`: relative, no ``..`` segment, so it cannot leave
the storage root; the local provider checks the resolved path again) and the file name (one
line) with no I/O. Reading stats the object first and refuses one larger than the notifier's
``limits.max_attachment_size`` before reading a byte, then streams it, stopping as soon as more
than the limit arrived (the object may have grown since).
"""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ductwork._lines import check_line
from ductwork.errors import ValidationError
from ductwork.providers.channels import human_size
from ductwork.providers.notifier import Attachment
from ductwork.providers.storage import check_key

if TYPE_CHECKING:
    from ductwork.client import Ductwork
    from ductwork.config.models import AttachmentTemplate
    from ductwork.expressions import Template

__all__ = ["StoredAttachment", "read_attachments", "render_attachments"]

_CHUNK = 256 * 1024


@dataclass(frozen=True)
class StoredAttachment:
    """An attachment to read from ``storage`` at ``key``, rendered for one send."""

    storage: str
    key: str
    filename: str
    content_type: str | None


def render_attachments(
    specs: Sequence[AttachmentTemplate],
    templates: Mapping[Any, Template],
    prefix: tuple[str, str, str],
    data: Mapping[str, Any],
    where: str,
) -> list[StoredAttachment]:
    """The message's attachments for ``data`` (``templates`` keyed ``(*prefix, field)``)."""
    out: list[StoredAttachment] = []
    for i, spec in enumerate(specs):
        field = f"attachments[{i}]"

        def fill(name: str, text: str | None, field: str = field) -> str | None:
            template = templates.get((*prefix, f"{field}.{name}"))
            if template is None:
                return text
            return template.render(data, where=f"{where}.{field}.{name}")

        key = fill("key", spec.key) or ""
        try:
            check_key(key)
        except ValidationError as exc:
            raise type(exc)(f"{where}.{field}.key: {exc}") from None
        filename = fill("filename", spec.filename) or key.rsplit("/", 1)[-1]
        check_line(filename, f"{where}.{field}.filename")
        out.append(StoredAttachment(spec.storage, key, filename, spec.content_type))
    return out


def _too_large(att: StoredAttachment, size: int | str, limit: int) -> ValidationError:
    return ValidationError(
        f"attachment {att.filename!r} (storage {att.storage!r}, key {att.key!r}) is {size} "
        f"bytes; the limit is {limit} bytes ({human_size(limit)}, the notifier's "
        "limits.max_attachment_size): nothing was sent"
    )


async def read_attachments(
    dw: Ductwork, stored: Sequence[StoredAttachment], limit: int, env: str | None
) -> list[Attachment]:
    """Each attachment's content; :class:`ValidationError` for one over ``limit`` bytes.

    Raises:
        NotFoundError: an object is missing (storage and key named).
        ValidationError: an object is larger than ``limit`` (storage, key, size and limit).
    """
    out: list[Attachment] = []
    for att in stored:
        info = await dw.storage.stat(att.storage, att.key, env=env)
        if info.size > limit:
            raise _too_large(att, info.size, limit)
        chunks: list[bytes] = []
        total = 0
        stream = dw.storage.stream(att.storage, att.key, chunk_size=_CHUNK, env=env)
        assert isinstance(stream, AsyncGenerator)  # an async generator: closed when we stop
        async with aclosing(stream):
            async for chunk in stream:
                total += len(chunk)
                if total > limit:  # it grew after the stat: stop reading
                    raise _too_large(att, f"more than {limit}", limit)
                chunks.append(chunk)
        content_type = (
            att.content_type
            or info.content_type
            or mimetypes.guess_type(att.filename)[0]
            or "application/octet-stream"
        )
        out.append(Attachment(att.filename, b"".join(chunks), content_type))
    return out
