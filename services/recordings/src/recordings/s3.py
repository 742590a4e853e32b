"""The storage port on S3-compatible object storage (AWS S3, MinIO, Ceph, GCS's XML API…), so a
Kubernetes deployment keeps recordings off the pod's disk.

Library: aiobotocore, the asyncio port of botocore (the AWS SDK's core, maintained in the
aio-libs organisation alongside aiohttp, which it runs on). It streams a ranged GET chunk by
chunk on the event loop, as the HTTP API needs, without a thread per open download; boto3 in
a thread would hold a thread for every listener seeking through a recording. Objects are
uploaded with one PUT from the verified file (S3 takes up to 5 GiB that way, far above
RECORDINGS_MAX_BYTES).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Final

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from .domain import WAV_CONTENT_TYPE, ByteRange
from .storage import CHUNK_BYTES, ChunkStream, NotStored, Opened, check_key

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

_TOTAL: Final = re.compile(r"/([0-9]+)$")
_MISSING: Final = frozenset({"NoSuchKey", "404", "NotFound"})


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    # None: AWS itself (the region's endpoint); else e.g. http://minio:9000
    endpoint_url: str | None = None
    region: str | None = None
    # None: botocore's default chain (environment, web identity / IRSA, instance role)
    access_key: str | None = None
    secret_key: str | None = None


class S3Storage:
    def __init__(self, client: S3Client, bucket: str, *, chunk_bytes: int = CHUNK_BYTES) -> None:
        self._client = client
        self._bucket = bucket
        self._chunk_bytes = chunk_bytes

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, settings: S3Settings) -> AsyncIterator[S3Storage]:
        """An S3Storage whose client is closed when the block ends."""
        config = AioConfig(
            connect_timeout=10,
            read_timeout=60,
            retries={"max_attempts": 5, "mode": "standard"},
            # path-style works with every S3-compatible server (MinIO, moto), virtual-host
            # style needs DNS per bucket; AWS accepts both
            s3={"addressing_style": "path"},
        )
        session = get_session()
        async with session.create_client(
            "s3",
            endpoint_url=settings.endpoint_url or None,
            region_name=settings.region or None,
            aws_access_key_id=settings.access_key or None,
            aws_secret_access_key=settings.secret_key or None,
            config=config,
        ) as client:
            yield cls(client, settings.bucket)

    async def put(self, key: str, source: BinaryIO) -> int:
        check_key(key)
        source.seek(0, 2)
        size = source.tell()
        source.seek(0)
        await self._client.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=source,
            ContentLength=size,
            ContentType=WAV_CONTENT_TYPE,
        )
        return size

    async def open(self, key: str, byte_range: ByteRange | None = None) -> Opened:
        check_key(key)
        request: dict[str, Any] = {"Bucket": self._bucket, "Key": key}
        if byte_range is not None:
            request["Range"] = f"bytes={byte_range.start}-{byte_range.end}"
        try:
            response = await self._client.get_object(**request)
        except ClientError as exc:
            if _error_code(exc) in _MISSING:
                raise NotStored(key) from None
            raise
        body = response["Body"]
        length = int(response["ContentLength"])
        total = _TOTAL.search(response.get("ContentRange") or "")
        size = int(total.group(1)) if total else length

        async def release() -> None:
            body.close()

        return Opened(size, ChunkStream(body.read, length, release, chunk_bytes=self._chunk_bytes))

    async def delete(self, key: str) -> None:
        check_key(key)
        await self._client.delete_object(Bucket=self._bucket, Key=key)  # absent: still 204


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
