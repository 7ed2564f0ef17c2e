"""S3 (boto3) as the service uses it: bounded gets and puts, conditional writes, listings,
presigned URLs, and a cached reachability status. Any S3 endpoint works (AWS, SeaweedFS, MinIO,
Cloud.ru); credentials come from boto3's standard chain. What is stored where: ``results`` and
``job_store``.

Job records need compare-and-swap: ``put(..., if_match=etag)`` and ``if_none_match=True`` are S3's
conditional writes (AWS since 2024, SeaweedFS, MinIO); a lost race raises ``Conflict``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from .config import StorageArgs
from .errors import BadRequest, NotFound, PayloadTooLarge, StorageUnavailable

STATUS_CACHE_S = 5.0
Listing = list[tuple[str, float]]  # (key, last modified as epoch seconds)


class Conflict(Exception):
    """A conditional write lost: the object changed (or appeared) since it was read."""


class Storage:
    def __init__(self, args: StorageArgs) -> None:
        import boto3
        from botocore.config import Config

        self.args = args
        self._client = boto3.client(
            "s3",
            endpoint_url=args.endpoint_url,
            region_name=args.region,
            config=Config(
                connect_timeout=args.timeout_s,
                read_timeout=args.timeout_s,
                retries={"max_attempts": 2, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )
        self._status: tuple[float, str] | None = None

    def _key(self, key: str) -> str:
        return self.args.prefix + key

    async def _run(self, what: str, fn: Any, bucket: str | None = None, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await asyncio.to_thread(fn, Bucket=bucket or self.args.bucket, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("NoSuchKey", "NoSuchBucket", "404"):
                return None
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise Conflict(f"S3 {what} of {kwargs.get('Key')}: {code}") from None
            raise StorageUnavailable(f"S3 {what} failed: {exc}", self.args.retry_after_s) from None
        except BotoCoreError as exc:  # connection refused, timeouts, DNS
            raise StorageUnavailable(f"S3 {what} failed: {exc}", self.args.retry_after_s) from None

    async def put(
        self,
        key: str,
        data: bytes,
        content_type: str,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        """Write the object; returns its ETag. ``if_match``: only over that version of it;
        ``if_none_match``: only if there is none yet (``Conflict`` otherwise)."""
        conditions: dict[str, str] = {}
        if if_match is not None:
            conditions["IfMatch"] = if_match
        if if_none_match:
            conditions["IfNoneMatch"] = "*"
        put = self._client.put_object
        done = await self._run(
            "put", put, Key=self._key(key), Body=data, ContentType=content_type, **conditions
        )
        if done is None:  # S3 answers NoSuchKey to If-Match on an object that has gone
            raise Conflict(f"S3 put of {key}: the object to replace is gone")
        return str(done["ETag"])

    async def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such object."""
        found = await self.get_tagged(key)
        return None if found is None else found[0]

    async def get_tagged(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag (for a later ``put(if_match=...)``), or None."""
        found = await self._run("get", self._client.get_object, Key=self._key(key))
        if found is None:
            return None
        return await asyncio.to_thread(found["Body"].read), str(found["ETag"])

    async def list(self, prefix: str) -> list[tuple[str, float]]:
        """(key, last modified as epoch seconds) of every object under ``prefix``, in key order."""

        def pages(Bucket: str, Prefix: str) -> list[tuple[str, float]]:
            out = []
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=Bucket, Prefix=Prefix):
                for obj in page.get("Contents", []):
                    out.append((obj["Key"][len(self.args.prefix) :], obj["LastModified"].timestamp()))
            return out

        return await self._run("list", pages, Prefix=self._key(prefix)) or []

    async def list_groups(self, prefix: str) -> dict[str, Listing]:
        """``list(prefix)`` grouped by the folder right under ``prefix`` (a job, a result)."""
        groups: dict[str, Listing] = {}
        for name, modified in await self.list(prefix):
            groups.setdefault(name[len(prefix) :].split("/")[0], []).append((name, modified))
        return groups

    async def delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 1000):  # S3's limit per call
            objects = [{"Key": self._key(k)} for k in keys[start : start + 1000]]
            remove = self._client.delete_objects
            await self._run("delete", remove, Delete={"Objects": objects, "Quiet": True})

    async def read_uri(self, uri: str, limit_bytes: int) -> bytes:
        """An input document named ``s3://bucket/key``, read through the configured endpoint."""
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if not uri.startswith("s3://") or not bucket or not key:
            raise BadRequest(f"s3_uri must look like s3://bucket/key, not {uri[:200]!r}")
        head = await self._run("head", self._client.head_object, bucket=bucket, Key=key)
        if head is None:
            raise NotFound(f"no object {uri[:200]}")
        if head["ContentLength"] > limit_bytes:
            raise PayloadTooLarge(f"{uri[:200]} is {head['ContentLength']} bytes; the limit is {limit_bytes}")
        found = await self._run("get", self._client.get_object, bucket=bucket, Key=key)
        if found is None:
            raise NotFound(f"no object {uri[:200]}")
        return bytes(await asyncio.to_thread(found["Body"].read))

    async def presign(self, key: str) -> str:
        params = {"Bucket": self.args.bucket, "Key": self._key(key)}
        ttl = self.args.presign_ttl_s
        presign = self._client.generate_presigned_url
        return await asyncio.to_thread(presign, "get_object", Params=params, ExpiresIn=ttl)

    async def status(self) -> str:
        """'ok' or why not, checked at most every few seconds (health probes are frequent)."""
        now = time.monotonic()
        if self._status is None or now - self._status[0] > STATUS_CACHE_S:
            try:
                await self._run("head_bucket", self._client.head_bucket)
                state = "ok"
            except StorageUnavailable as exc:
                state = exc.detail
            self._status = (now, state)
        return self._status[1]
