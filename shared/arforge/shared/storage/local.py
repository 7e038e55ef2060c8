"""Local-filesystem object store (the embedded default).

Layout under ``root``::

    objects/<key>                 the object's bytes, at its key path
    meta/<h[:2]>/<h>.json         sidecar {key, content_type, metadata}; h = sha256(key)
    tmp/                          in-flight writes, renamed into place with os.replace

Keeping sidecars and temp files outside ``objects/`` means no key can collide with them
and they are never seen as objects. Every key passes :func:`check_key` and its resolved
path (symlinks followed) must stay inside ``objects/``; writes are atomic (temp file in
the same filesystem + ``os.replace``). Blocking file I/O runs in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

from .base import InvalidKey, ObjectNotFound, StoredObject, check_key
from .metadata import check_metadata

_COPY_CHUNK = 1 << 20
_DEFAULT_TYPE = "application/octet-stream"


class LocalStore:
    """:class:`~arforge.shared.storage.base.ObjectStore` over a directory tree.

    ``presigned_url`` returns ``None``: the API serves local objects through its own
    download route.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        self.objects = self.root / "objects"
        self.meta = self.root / "meta"
        self.tmp = self.root / "tmp"
        for d in (self.objects, self.meta, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self.objects = self.objects.resolve()

    # -- paths ---------------------------------------------------------------------------

    def path_for(self, key: str) -> Path:
        """Filesystem path of ``key``; raises :class:`InvalidKey` if it would leave the root."""
        check_key(key)
        path = (self.objects / key).resolve()
        if not path.is_relative_to(self.objects) or path == self.objects:
            raise InvalidKey(f"storage key escapes the store root: {key!r}")
        return path

    def _meta_path(self, key: str) -> Path:
        h = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return self.meta / h[:2] / f"{h}.json"

    def _tmp_path(self) -> Path:
        return self.tmp / f"{uuid.uuid4().hex}.part"

    # -- writes --------------------------------------------------------------------------

    def _write(
        self,
        key: str,
        fill: Callable[[BinaryIO], object],
        content_type: str,
        metadata: dict[str, str] | None,
    ) -> StoredObject:
        path = self.path_for(key)
        meta = check_metadata(metadata)
        tmp_obj, tmp_meta = self._tmp_path(), self._tmp_path()
        try:
            with open(tmp_obj, "wb") as f:
                fill(f)
                f.flush()
                os.fsync(f.fileno())
            size = tmp_obj.stat().st_size
            sidecar = {"key": key, "content_type": content_type, "metadata": meta}
            tmp_meta.write_text(json.dumps(sidecar, ensure_ascii=False), encoding="utf-8")
            mpath = self._meta_path(key)
            mpath.parent.mkdir(parents=True, exist_ok=True)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError) as e:
                raise InvalidKey(f"a parent of {key!r} is an existing object") from e
            if path.is_dir():
                raise InvalidKey(f"{key!r} is a prefix of other objects")
            # Sidecar first: a crash in between leaves metadata without an object (which
            # head ignores), never an object with the previous object's metadata.
            os.replace(tmp_meta, mpath)
            for attempt in range(3):
                try:
                    os.replace(tmp_obj, path)
                    break
                except FileNotFoundError:
                    # A concurrent delete_prefix removed the (then empty) parent.
                    if attempt == 2:
                        raise
                    path.parent.mkdir(parents=True, exist_ok=True)
        finally:
            for t in (tmp_obj, tmp_meta):
                with contextlib.suppress(FileNotFoundError):
                    t.unlink()
        return StoredObject(key=key, size=size, content_type=content_type, metadata=meta)

    async def put_file(
        self, key: str, path: Path, *, content_type: str, metadata: dict[str, str] | None = None
    ) -> StoredObject:
        """Copy the local file ``path`` to ``key`` (streamed in 1 MiB chunks, atomic)."""

        def fill(dst: BinaryIO) -> None:
            with open(path, "rb") as src:
                shutil.copyfileobj(src, dst, _COPY_CHUNK)

        return await asyncio.to_thread(self._write, key, fill, content_type, metadata)

    async def put_bytes(
        self, key: str, data: bytes, *, content_type: str, metadata: dict[str, str] | None = None
    ) -> StoredObject:
        """Store ``data`` under ``key`` (atomic)."""
        return await asyncio.to_thread(
            self._write, key, lambda f: f.write(data), content_type, metadata
        )

    # -- reads ---------------------------------------------------------------------------

    def _open(self, key: str) -> BinaryIO:
        try:
            f = open(self.path_for(key), "rb")  # noqa: SIM115 - closed by the caller
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            raise ObjectNotFound(key) from e
        return f

    async def get_file(self, key: str, dest: Path) -> Path:
        """Copy ``key`` to ``dest`` (streamed; ``dest`` appears only when complete)."""

        def copy() -> Path:
            with self._open(key) as src:
                dest.parent.mkdir(parents=True, exist_ok=True)
                part = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
                try:
                    with open(part, "wb") as dst:
                        shutil.copyfileobj(src, dst, _COPY_CHUNK)
                    os.replace(part, dest)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        part.unlink()
            return dest

        return await asyncio.to_thread(copy)

    async def stream(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Yield the object's bytes in chunks of at most ``chunk_size``."""
        f = await asyncio.to_thread(self._open, key)
        try:
            while chunk := await asyncio.to_thread(f.read, chunk_size):
                yield chunk
        finally:
            f.close()

    def _head(self, key: str) -> StoredObject | None:
        path = self.path_for(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not path.is_file():
            return None
        content_type, meta = _DEFAULT_TYPE, {}
        try:
            side = json.loads(self._meta_path(key).read_text(encoding="utf-8"))
            if side.get("key") == key:
                content_type = side.get("content_type") or _DEFAULT_TYPE
                meta = dict(side.get("metadata") or {})
        except (FileNotFoundError, ValueError):
            pass
        return StoredObject(key=key, size=st.st_size, content_type=content_type, metadata=meta)

    async def head(self, key: str) -> StoredObject | None:
        """Size, content type and metadata of ``key``, or ``None`` if absent."""
        return await asyncio.to_thread(self._head, key)

    # -- deletes -------------------------------------------------------------------------

    def _delete_prefix(self, prefix: str) -> int:
        check_key(prefix.rstrip("/"))
        # S3 semantics: a plain string prefix. Walk the deepest directory it names.
        head, _, _ = prefix.rpartition("/")
        base = self.path_for(head) if head else self.objects
        if not base.is_dir():
            return 0
        count = 0
        for dirpath, dirnames, filenames in os.walk(base, topdown=False):
            for name in filenames:
                p = Path(dirpath) / name
                key = p.relative_to(self.objects).as_posix()
                if not key.startswith(prefix):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    count += 1
                with contextlib.suppress(FileNotFoundError):
                    self._meta_path(key).unlink()
            for name in dirnames:
                with contextlib.suppress(OSError):
                    (Path(dirpath) / name).rmdir()  # only succeeds when empty
        if base != self.objects:
            # Remove now-empty parents up to (not including) objects/.
            p = base
            while p != self.objects:
                try:
                    p.rmdir()
                except OSError:
                    break
                p = p.parent
        return count

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix`` (string prefix, as in S3).

        An empty prefix is refused (:class:`InvalidKey`) so a bug cannot wipe the store.
        Returns the number of objects deleted.
        """
        return await asyncio.to_thread(self._delete_prefix, prefix)

    async def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        """Always ``None``: local objects are downloaded through the API."""
        check_key(key)
        return None

    async def close(self) -> None:
        """Nothing to release."""
