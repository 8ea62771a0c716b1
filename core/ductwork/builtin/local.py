"""``local`` storage: objects as files under a root folder.

Features: atomic writes (temp file, fsync, rename), streamed reads and writes, metadata and
etag (MD5) kept beside each object, keys that would leave the root refused twice over
(:func:`check_key`, then the resolved path is checked to be inside the root).

Configuration: ``path`` (default ``.ductwork/files``, relative to the config's folder).
Errors: a missing object raises :class:`NotFoundError`; OS errors become :class:`ProviderError`.
No signed URLs: there is no server to sign for.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import mimetypes
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

from ductwork.errors import InvalidKeyError, NotFoundError
from ductwork.providers.base import Options
from ductwork.providers.storage import Data, ObjectInfo, Page, Storage, check_key, check_prefix

__all__ = ["LocalStorage"]

_META = ".ductwork-meta"
_TMP = ".ductwork-tmp"
_RESERVED = (_META, _TMP)


class LocalOptions(Options):
    """Options of ``local`` storage."""

    path: str = ".ductwork/files"


class LocalStorage(Storage[LocalOptions]):
    """Files under a root folder."""

    capabilities: ClassVar[frozenset[str]] = frozenset()

    @property
    def root(self) -> Path:
        """The folder objects live under."""
        return self.context.resolve(self.options.path).resolve()

    @property
    def endpoint(self) -> str:
        return str(self.root)

    async def open(self) -> None:
        await asyncio.to_thread(self._mkdirs)

    def _mkdirs(self) -> None:
        with self.translate(OSError, message="cannot create storage folder"):
            for sub in _RESERVED:
                (self.root / sub).mkdir(parents=True, exist_ok=True)

    def _path(self, key: str, base: str | None = None) -> Path:
        check_key(key)
        if key.split("/", 1)[0] in _RESERVED:
            raise InvalidKeyError(f"storage key {key!r} uses a folder reserved by local storage")
        root = self.root
        target = (root / base / key) if base else (root / key)
        resolved = target.resolve()
        if not resolved.is_relative_to(root):
            raise InvalidKeyError(f"storage key {key!r} resolves outside the storage root")
        return target

    async def save(
        self,
        key: str,
        data: Data,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        target = self._path(key)
        meta_path = self._path(key, _META).with_name(self._path(key).name + ".json")
        tmp = self.root / _TMP / uuid.uuid4().hex
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        with self.translate(OSError, message=f"cannot save {key!r}"):
            await asyncio.to_thread(tmp.parent.mkdir, parents=True, exist_ok=True)
            handle = await asyncio.to_thread(open, tmp, "wb")
            try:
                if isinstance(data, bytes | bytearray | memoryview):
                    chunk = bytes(data)
                    digest.update(chunk)
                    size = len(chunk)
                    await asyncio.to_thread(handle.write, chunk)
                else:
                    async for chunk in data:
                        digest.update(chunk)
                        size += len(chunk)
                        await asyncio.to_thread(handle.write, chunk)
                await asyncio.to_thread(_flush, handle)
            except BaseException:
                handle.close()
                await asyncio.to_thread(_unlink, tmp)
                raise
            handle.close()
            ctype = content_type or mimetypes.guess_type(key)[0] or "application/octet-stream"
            meta = {"content_type": ctype, "etag": digest.hexdigest(), "metadata": metadata or {}}
            await asyncio.to_thread(_commit, tmp, target, meta_path, meta)
        return await self.stat(key)

    async def stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            handle = await asyncio.to_thread(open, path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFoundError(f"no object {key!r} in {self.context.resource}") from None
        except OSError as exc:
            raise self.error(f"cannot read {key!r}: {exc.strerror}") from exc
        try:
            while chunk := await asyncio.to_thread(handle.read, chunk_size):
                yield chunk
        finally:
            handle.close()

    async def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        meta_path = self._path(key, _META).with_name(path.name + ".json")
        try:
            st, meta = await asyncio.to_thread(_stat, path, meta_path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFoundError(f"no object {key!r} in {self.context.resource}") from None
        except OSError as exc:
            raise self.error(f"cannot stat {key!r}: {exc.strerror}") from exc
        return ObjectInfo(
            key=key,
            size=st.st_size,
            content_type=meta.get("content_type"),
            etag=meta.get("etag"),
            modified=dt.datetime.fromtimestamp(st.st_mtime, tz=dt.UTC),
            metadata=dict(meta.get("metadata", {})),
        )

    async def delete(self, key: str) -> bool:
        path = self._path(key)
        meta_path = self._path(key, _META).with_name(path.name + ".json")
        with self.translate(OSError, message=f"cannot delete {key!r}"):
            return await asyncio.to_thread(_delete, path, meta_path, self.root)

    async def list(self, prefix: str = "", *, limit: int = 1000, cursor: str | None = None) -> Page:
        check_prefix(prefix)
        with self.translate(OSError, message="cannot list"):
            keys = await asyncio.to_thread(_walk, self.root, prefix)
        keys = [k for k in keys if cursor is None or k > cursor]
        page, rest = keys[:limit], keys[limit:]
        items = [await self.stat(k) for k in page]
        return Page(items=items, cursor=page[-1] if rest else None)


def _flush(handle: object) -> None:
    handle.flush()  # type: ignore[attr-defined]
    os.fsync(handle.fileno())  # type: ignore[attr-defined]


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _commit(tmp: Path, target: Path, meta_path: Path, meta: dict[str, Any]) -> None:
    if target.is_dir():
        tmp.unlink(missing_ok=True)
        raise IsADirectoryError(21, "a folder of objects already uses this key", str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    meta_tmp = tmp.with_suffix(".meta")
    meta_tmp.write_text(json.dumps(meta))
    os.replace(meta_tmp, meta_path)
    os.replace(tmp, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _stat(path: Path, meta_path: Path) -> tuple[os.stat_result, dict[str, Any]]:
    st = path.stat()
    if not path.is_file():
        raise FileNotFoundError(str(path))
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        meta = {"content_type": mimetypes.guess_type(path.name)[0]}
    return st, meta


def _delete(path: Path, meta_path: Path, root: Path) -> bool:
    meta_path.unlink(missing_ok=True)
    try:
        path.unlink()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return False
    parent = path.parent
    while parent != root and parent.is_relative_to(root):
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent
    return True


def _walk(root: Path, prefix: str) -> list[str]:
    keys: list[str] = []
    start = root
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(start).as_posix()
        if rel == ".":
            dirnames[:] = [d for d in dirnames if d not in _RESERVED]
            rel = ""
        for name in filenames:
            key = f"{rel}/{name}" if rel else name
            if key.startswith(prefix):
                keys.append(key)
    keys.sort()
    return keys
