"""Results in S3 (boto3): stored under a content hash, answered again from there, handed out as
presigned URLs. Any S3 endpoint works (AWS, SeaweedFS, MinIO, Cloud.ru); credentials come from
boto3's standard chain.

A result's key is ``results/<sha256>/`` where the hash covers the input bytes, the options that
change the output, and the models that produced it, so the same document asked the same way of the
same models is the same key, and a retried request writes the same objects again (idempotent).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

from .config import StorageArgs
from .errors import BadRequest, NotFound, PayloadTooLarge, StorageUnavailable

STATUS_CACHE_S = 5.0


def result_key(data: bytes, options: Mapping[str, Any], models: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(data)
    digest.update(json.dumps({"options": options, "models": models}, sort_keys=True, default=str).encode())
    return digest.hexdigest()


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
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "NoSuchBucket", "404"):
                return None
            raise StorageUnavailable(f"S3 {what} failed: {exc}", self.args.retry_after_s) from None
        except BotoCoreError as exc:  # connection refused, timeouts, DNS
            raise StorageUnavailable(f"S3 {what} failed: {exc}", self.args.retry_after_s) from None

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        put = self._client.put_object
        await self._run("put", put, Key=self._key(key), Body=data, ContentType=content_type)

    async def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such object."""
        found = await self._run("get", self._client.get_object, Key=self._key(key))
        return None if found is None else await asyncio.to_thread(found["Body"].read)

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


class ResultStore:
    """OCR answers in S3: ``results/<key>/result.json`` and ``result.md``."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def load(self, key: str) -> dict[str, Any] | None:
        data = await self.storage.get(f"results/{key}/result.json")
        return None if data is None else json.loads(data)

    async def save(self, key: str, body: Mapping[str, Any]) -> dict[str, str]:
        """Write the answer (the JSON last: its presence means the result is whole) and return
        presigned URLs of both objects."""
        await self.storage.put(f"results/{key}/result.md", str(body["markdown"]).encode(), "text/markdown")
        await self.storage.put(
            f"results/{key}/result.json", json.dumps(body, ensure_ascii=False).encode(), "application/json"
        )
        return await self.urls(key)

    async def urls(self, key: str) -> dict[str, str]:
        return {
            "key": key,
            "json_url": await self.storage.presign(f"results/{key}/result.json"),
            "markdown_url": await self.storage.presign(f"results/{key}/result.md"),
        }
