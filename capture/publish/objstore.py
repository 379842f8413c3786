"""S3-compatible object storage (AWS S3, MinIO, Ceph) through boto3: one thin, typed room.

Usage::

    where = S3Location.parse("s3://parts/team-a")
    store = ObjectStore.connect(settings.storage)          # endpoint, region, concurrency
    store.upload_file(path, where.key("objects", "ab", sha), sha256=sha)
    store.head(key)                                        # {"size", "sha256"} or None

Why boto3 and not our own HTTP client: request signing, retries with back-off, multipart
upload and ranged parallel download are boto3's and s3transfer's, kept by AWS and used against
MinIO and Ceph every day.  This module only adds what partrig needs on top: keys checked at the
edge, the sha256 stored as object metadata (``x-amz-meta-sha256``) so a resumed publish can
skip what is already there, and boto3's exceptions turned into :mod:`rig.errors`.

Credentials are never in partrig's configuration: boto3 reads ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_PROFILE``, ``~/.aws`` or an instance role, as every other AWS
tool does.  ``AWS_ENDPOINT_URL`` (MinIO) and ``AWS_REGION`` work too when the configuration
leaves them empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rig.errors import AccessDenied, ConfigError, NotFound, PullError, QueryError

MiB = 1024 * 1024


class ObjectExists(QueryError):
    """A conditional create found the key already taken (published ids are immutable)."""


#: S3's own rule for bucket names (lower case, digits, dots, hyphens; 3 to 63 long).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_PART_RE = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix (no leading or trailing slash; may be empty)."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """``s3://bucket/some/prefix`` -> S3Location; ConfigError says what is wrong."""
        text = str(url).strip()
        if not text.startswith("s3://"):
            raise ConfigError(f"{url!r} is not an s3:// URL (write s3://bucket/prefix)")
        bucket, _, prefix = text[5:].partition("/")
        if not _BUCKET_RE.match(bucket):
            raise ConfigError(f"{bucket!r} is not a valid bucket name (3-63 of a-z, 0-9, '.', '-')")
        parts = [p for p in prefix.split("/") if p]
        bad = [p for p in parts if p in (".", "..") or not _PREFIX_PART_RE.match(p)]
        if bad:
            raise ConfigError(
                f"prefix part {bad[0]!r} of {url!r} is not allowed: use letters, digits, "
                "'.', '_' and '-' between slashes"
            )
        return cls(bucket, "/".join(parts))

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` under this prefix."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p and p.strip("/"))

    def child(self, *parts: str) -> S3Location:
        return S3Location(self.bucket, self.key(*parts))

    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


@dataclass(frozen=True)
class TransferSettings:
    """How transfers run: the same numbers drive partrig and the benchmark's bare baseline."""

    endpoint_url: str = ""
    region: str = ""
    concurrency: int = 8
    part_size: int = 16 * MiB

    @classmethod
    def from_config(cls, storage: Any | None) -> TransferSettings:
        """From the ``[storage]`` section (:class:`rig.config.StorageConfig`), or defaults."""
        if storage is None:
            return cls()
        return cls(
            endpoint_url=storage.endpoint_url,
            region=storage.region,
            concurrency=storage.concurrency,
            part_size=storage.part_size_mb * MiB,
        )

    def transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=self.part_size,
            multipart_chunksize=self.part_size,
            max_concurrency=self.concurrency,
            use_threads=True,
        )


def make_client(settings: TransferSettings) -> Any:
    """A boto3 S3 client sized for ``concurrency`` parallel requests (plus the file pool's)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ConfigError(
            "object storage needs boto3: pip install 'partrig[s3]' (the train extra has it)"
        ) from None
    config = Config(
        # NOTE: file-level and part-level workers share one pool of connections; without the
        # headroom urllib3 discards connections and every request pays a new handshake.
        max_pool_connections=settings.concurrency * 2 + 4,
        retries={"max_attempts": 5, "mode": "standard"},
        s3={"addressing_style": "path"} if settings.endpoint_url else None,
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.endpoint_url or None,
        region_name=settings.region or None,
        config=config,
    )


class ObjectStore:
    """One bucket through one boto3 client and one s3transfer manager (thread-safe)."""

    def __init__(self, client: Any, bucket: str, settings: TransferSettings) -> None:
        from boto3.s3.transfer import S3Transfer

        self.client = client
        self.bucket = bucket
        self.settings = settings
        self.transfer = S3Transfer(client, settings.transfer_config())

    @classmethod
    def connect(cls, bucket: str, settings: TransferSettings) -> ObjectStore:
        return cls(make_client(settings), bucket, settings)

    def head(self, key: str) -> dict[str, Any] | None:
        """``{"size", "sha256"}`` of an object (sha256 "" if it has none), None if absent."""
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _status(exc) == 404:
                return None
            raise storage_error(exc, f"checking s3://{self.bucket}/{key}") from None
        return {"size": int(r["ContentLength"]), "sha256": r.get("Metadata", {}).get("sha256", "")}

    def list_sizes(self, prefix: str, max_pages: int) -> dict[str, int] | None:
        """Every key under ``prefix`` with its size, or None past ``max_pages`` pages of 1000.

        Why a page budget: one LIST page answers for up to 1000 objects, far cheaper than 1000
        HEADs on a fresh or small prefix, but a prefix holding millions of objects would cost
        more to list than to ask about the few files at hand.
        """
        found: dict[str, int] = {}
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix.rstrip("/") + "/"
            )
            for n, page in enumerate(pages, start=1):
                if n > max_pages:
                    return None
                for item in page.get("Contents", []):
                    found[item["Key"]] = int(item["Size"])
        except Exception as exc:
            raise storage_error(exc, f"listing s3://{self.bucket}/{prefix}") from None
        return found

    def upload_file(self, path: Path, key: str, *, sha256: str) -> None:
        """Upload a file (multipart above the part size) with its sha256 as metadata."""
        try:
            self.transfer.upload_file(
                str(path), self.bucket, key, extra_args={"Metadata": {"sha256": sha256}}
            )
        except Exception as exc:
            raise storage_error(exc, f"uploading {path} to s3://{self.bucket}/{key}") from None

    def put_bytes(
        self, key: str, data: bytes, *, sha256: str, content_type: str, if_absent: bool = False
    ) -> None:
        """One PUT; with ``if_absent`` a conditional create (``If-None-Match: *``) that raises
        :class:`ObjectExists` instead of replacing an object another writer put there first."""
        args = {"Bucket": self.bucket, "Key": key, "Body": data, "ContentType": content_type,
                "Metadata": {"sha256": sha256}}  # fmt: skip
        try:
            try:
                self.client.put_object(**args, **({"IfNoneMatch": "*"} if if_absent else {}))
            except Exception as exc:
                if not if_absent or _status(exc) != 501:
                    raise
                # NOTE: a store without conditional writes (older MinIO or Ceph): the caller
                # checked that the key was absent just before, which is the best it can do.
                self.client.put_object(**args)
        except Exception as exc:
            if _status(exc) == 412:
                raise ObjectExists(
                    f"s3://{self.bucket}/{key} was written by someone else"
                ) from None
            raise storage_error(exc, f"writing s3://{self.bucket}/{key}") from None

    def get_bytes(self, key: str, limit: int) -> bytes:
        """A small object (a manifest) read whole; refuses one larger than ``limit`` bytes."""
        try:
            r = self.client.get_object(Bucket=self.bucket, Key=key)
            if int(r["ContentLength"]) > limit:
                raise PullError(
                    f"s3://{self.bucket}/{key} is {r['ContentLength']} bytes, more than the "
                    f"{limit} a manifest may be; is the URL right?"
                )
            return bytes(r["Body"].read(limit + 1))
        except PullError:
            raise
        except Exception as exc:
            raise storage_error(exc, f"reading s3://{self.bucket}/{key}") from None

    def open_stream(self, key: str) -> Any:
        """The object's streaming body (``.read(n)``, ``.close()``) for reading front to back."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except Exception as exc:
            raise storage_error(exc, f"reading s3://{self.bucket}/{key}") from None

    def get_to_file(self, key: str, f: Any, digest: Any) -> int:
        """Stream an object into the open file ``f``, feeding ``digest``; bytes written."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            n = 0
            for chunk in body.iter_chunks(1024 * 1024):
                f.write(chunk)
                digest.update(chunk)
                n += len(chunk)
            return n
        except Exception as exc:
            raise storage_error(exc, f"reading s3://{self.bucket}/{key}") from None

    def download_file(self, key: str, path: Path) -> None:
        """Download to ``path`` (ranged parallel parts above the part size)."""
        try:
            self.transfer.download_file(self.bucket, key, str(path))
        except Exception as exc:
            raise storage_error(exc, f"downloading s3://{self.bucket}/{key}") from None


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        meta = response.get("ResponseMetadata", {})
        code = response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
            return 404
        return meta.get("HTTPStatusCode")
    return None


def storage_error(exc: Exception, doing: str) -> Exception:
    """boto3's exception as a rig error that says what was being done and what to check."""
    status = _status(exc)
    if status == 404:
        return NotFound(f"{doing}: not found (check the bucket, prefix and snapshot id)")
    if status in (401, 403):
        return AccessDenied(
            f"{doing}: access denied ({status}); check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            "or AWS_PROFILE and the bucket policy"
        )
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return AccessDenied(
            f"{doing}: no credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
            "AWS_PROFILE (see docs/datasets.md)"
        )
    return PullError(f"{doing}: {name}: {exc}; check storage.endpoint_url and the network")
