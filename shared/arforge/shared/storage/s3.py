"""S3-compatible object store (AWS S3, Cloudflare R2, MinIO) over aioboto3.

* Uploads stream from disk with a managed multipart transfer (8 MiB parts, a bounded
  queue), so memory stays at tens of MiB whatever the file size.
* Checksums are computed/validated only when an operation requires them
  (``request_checksum_calculation="when_required"``): botocore >= 1.36 otherwise adds
  CRC32 trailers that Cloudflare R2 and older MinIO reject.
* User metadata values are RFC 2047-encoded when not plain ASCII and decoded on
  :meth:`S3Store.head` (see :mod:`.metadata`).
* The bucket is created on first use when missing and ``create_bucket`` is true; a
  ``403`` on ``HeadBucket`` (tokens scoped to objects, common on R2) is taken as "exists".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aioboto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from .base import ObjectNotFound, StoredObject, check_key
from .metadata import check_metadata, decode_value, encode_value

_PART = 8 * 1024 * 1024
_TRANSFER = TransferConfig(
    multipart_threshold=_PART, multipart_chunksize=_PART, max_concurrency=4, max_io_queue=2
)
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


class S3Store:
    """:class:`~arforge.shared.storage.base.ObjectStore` on an S3 bucket.

    Args:
        bucket: bucket name.
        endpoint_url: e.g. ``http://127.0.0.1:9000`` (MinIO) or the R2 account endpoint;
            ``None`` means AWS. With an explicit endpoint, path-style addressing is used.
        region: signing region; ``"auto"`` is what R2 expects.
        create_bucket: create the bucket on first use if it does not exist.
    """

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "auto",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        create_bucket: bool = True,
    ) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self.create_bucket = create_bucket
        self._session = aioboto3.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
        )
        self._config = Config(
            signature_version="s3v4",
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            retries={"max_attempts": 5, "mode": "standard"},
        )
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def _c(self) -> Any:
        """The shared client, opened (and the bucket ensured) on first use."""
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                stack = contextlib.AsyncExitStack()
                client = await stack.enter_async_context(
                    self._session.client("s3", endpoint_url=self.endpoint_url, config=self._config)
                )
                try:
                    if self.create_bucket:
                        await self._ensure_bucket(client)
                except BaseException:
                    await stack.aclose()
                    raise
                self._stack, self._client = stack, client
        return self._client

    async def _ensure_bucket(self, client: Any) -> None:
        try:
            await client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as e:
            if _code(e) in ("403", "AccessDenied"):
                return
            if _code(e) not in ("404", "NoSuchBucket", "NotFound"):
                raise
        # Without a LocationConstraint first (AWS us-east-1, R2, MinIO); servers that want
        # one matching the signing region say IllegalLocationConstraintException.
        attempts: list[dict[str, Any]] = [{}]
        if self.region and self.region != "us-east-1":
            attempts.append({"CreateBucketConfiguration": {"LocationConstraint": self.region}})
        for i, extra in enumerate(attempts):
            try:
                await client.create_bucket(Bucket=self.bucket, **extra)
                return
            except ClientError as e:
                if _code(e) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    return
                if _code(e) != "IllegalLocationConstraintException" or i == len(attempts) - 1:
                    raise

    @staticmethod
    def _extra(content_type: str, metadata: dict[str, str] | None) -> dict[str, Any]:
        meta = check_metadata(metadata)
        return {
            "ContentType": content_type,
            "Metadata": {k: encode_value(v) for k, v in meta.items()},
        }

    async def put_file(
        self, key: str, path: Path, *, content_type: str, metadata: dict[str, str] | None = None
    ) -> StoredObject:
        """Upload ``path`` to ``key``: single PUT below 8 MiB, else multipart (streamed)."""
        check_key(key)
        extra = self._extra(content_type, metadata)
        client = await self._c()
        size = os.stat(path).st_size
        await client.upload_file(str(path), self.bucket, key, ExtraArgs=extra, Config=_TRANSFER)
        return StoredObject(key, size, content_type, check_metadata(metadata))

    async def put_bytes(
        self, key: str, data: bytes, *, content_type: str, metadata: dict[str, str] | None = None
    ) -> StoredObject:
        """Store ``data`` under ``key`` with one PUT."""
        check_key(key)
        extra = self._extra(content_type, metadata)
        client = await self._c()
        await client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
        return StoredObject(key, len(data), content_type, check_metadata(metadata))

    async def stream(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Yield the object's bytes in chunks of at most ``chunk_size``.

        Raises :class:`ObjectNotFound` when the key does not exist.
        """
        check_key(key)
        client = await self._c()
        try:
            resp = await client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if _code(e) in _NOT_FOUND:
                raise ObjectNotFound(key) from e
            raise
        body = resp["Body"]
        try:
            async for chunk in body.iter_chunks(chunk_size):
                if chunk:
                    yield chunk
        finally:
            body.close()

    async def get_file(self, key: str, dest: Path) -> Path:
        """Download ``key`` to ``dest`` (streamed; ``dest`` appears only when complete)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            with open(part, "wb") as f:
                async for chunk in self.stream(key):
                    await asyncio.to_thread(f.write, chunk)
            os.replace(part, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
        return dest

    async def head(self, key: str) -> StoredObject | None:
        """Size, content type and decoded metadata of ``key``, or ``None`` if absent."""
        check_key(key)
        client = await self._c()
        try:
            r = await client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if _code(e) in _NOT_FOUND:
                return None
            raise
        meta = {k.lower(): decode_value(v) for k, v in (r.get("Metadata") or {}).items()}
        return StoredObject(
            key=key,
            size=int(r.get("ContentLength", 0)),
            content_type=r.get("ContentType") or "application/octet-stream",
            metadata=meta,
        )

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix`` (paginated, 1000 per call).

        An empty prefix is refused (:class:`InvalidKey`). Returns how many were deleted.
        """
        check_key(prefix.rstrip("/"))
        client = await self._c()
        count = 0
        paginator = client.get_paginator("list_objects_v2")
        # Collect first, then delete: deleting while listing can skip keys on some servers.
        keys: list[str] = []
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents") or [])
        for i in range(0, len(keys), 1000):
            batch = keys[i : i + 1000]
            r = await client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            errors = r.get("Errors") or []
            if errors:
                first = errors[0]
                raise RuntimeError(
                    f"S3 refused to delete {len(errors)} object(s), e.g. "
                    f"{first.get('Key')!r}: {first.get('Code')} {first.get('Message')}"
                )
            count += len(batch)
        return count

    async def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        """A SigV4 presigned GET URL valid for ``expires_s`` seconds (max 7 days)."""
        check_key(key)
        client = await self._c()
        url: str = await client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=max(1, min(int(expires_s), 7 * 24 * 3600)),
        )
        return url

    async def close(self) -> None:
        """Close the HTTP client (safe to call twice)."""
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()
