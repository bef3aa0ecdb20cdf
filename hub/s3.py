"""The hub's blobs in S3-compatible object storage, for a district of several hub replicas.

:class:`S3Blobs` implements hub.storage.Blobs on one bucket of any S3-compatible
store (AWS S3, SeaweedFS, MinIO, Ceph RGW, Garage). Named by a URL::

    s3://<bucket>[/<prefix>]?endpoint=https://s3.example.go.id[&region=ap-southeast-3]

``endpoint`` is the store's address (left out: AWS itself); ``region`` defaults to
the AWS_REGION / AWS_DEFAULT_REGION environment, else ``us-east-1``; an optional
``prefix`` keeps the hub's keys under one folder of a shared bucket. Credentials
are never in the URL (it shows in process lists and logs): boto3 reads them from
its usual places, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment,
``~/.aws/credentials``, or the machine's role.

Durability: ``put`` returns once the store answered 200 to the PutObject, which is
the store's promise that the object is stored (S3 is read-after-write consistent
since 2020; SeaweedFS, MinIO and Ceph acknowledge after their write). boto3 sends
a checksum of the body with it, which the store checks before answering, so a
body cut or altered on the way is refused rather than stored.

The bucket is made at start if it is not there (two replicas starting together
both succeed). An unreachable endpoint, refused credentials or a missing bucket is
a StorageError naming the endpoint and bucket, at start and at each call.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)

from hub.storage import StorageError, check_key

_MISSING_BUCKET = {"NoSuchBucket"}
_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}
_DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"}


def parse_url(url: str) -> tuple[str, str, str | None, str | None]:
    """``(bucket, prefix, endpoint, region)`` from ``s3://bucket[/prefix]?endpoint=...``.

    Raises StorageError for anything else (credentials in the URL included).
    """
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.hostname:
        raise StorageError(f"--blobs {url!r}: expected s3://<bucket>?endpoint=...")
    if parts.username or parts.password:
        raise StorageError(
            "--blobs: credentials do not go in the URL; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY in the hub's environment"
        )
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"endpoint", "region"})
    if unknown:
        raise StorageError(f"--blobs {url!r}: unknown option(s) {', '.join(unknown)}")
    endpoint = query.get("endpoint", [None])[-1] or None
    if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
        raise StorageError(f"--blobs {url!r}: endpoint must be an http:// or https:// URL")
    region = query.get("region", [None])[-1] or None
    prefix = parts.path.strip("/")
    if prefix:
        check_key(prefix)
        prefix += "/"
    # the bucket name as written (urlsplit lower-cases the host; S3 names are lower-case)
    bucket = parts.netloc.rsplit("@", 1)[-1]
    return bucket, prefix, endpoint, region


class S3Blobs:
    """Blobs as objects of one S3 bucket; thread-safe (one boto3 client, shared)."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 5,
        read_timeout: float = 30,
        max_connections: int = 32,
        create_bucket: bool = True,
        page_size: int = 1000,
    ) -> None:
        self.bucket, self.prefix, self.endpoint, region = parse_url(url)
        self.region = (
            region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        ) or "us-east-1"
        self.page_size = page_size  # keys per listing request (S3's most is 1000)
        self._where = f"bucket {self.bucket!r} at {self.endpoint or 'AWS S3'}"
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # a put, a get, a delete and a list are each safe to repeat
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=max_connections,
            # a store of its own (SeaweedFS, MinIO) rarely has a DNS name per bucket
            s3={"addressing_style": "path" if self.endpoint else "auto"},
        )
        # a session of its own: boto3's default session is not thread-safe to create
        self._client = boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=self.region, config=config
        )
        if create_bucket:
            self._ensure_bucket()

    def __repr__(self) -> str:
        return f"S3Blobs({self.bucket!r}, prefix={self.prefix!r}, endpoint={self.endpoint!r})"

    def _ensure_bucket(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
                raise self._error("cannot use", exc) from None
        except (BotoCoreError, ValueError) as exc:
            raise self._error("cannot reach", exc) from None
        try:
            if self.region == "us-east-1":
                self._client.create_bucket(Bucket=self.bucket)
            else:
                self._client.create_bucket(
                    Bucket=self.bucket,
                    CreateBucketConfiguration={"LocationConstraint": self.region},
                )
        except ClientError as exc:
            # another replica made it just now: fine; anything else is not
            if _code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise self._error("cannot create", exc) from None
            if _code(exc) == "BucketAlreadyExists":  # someone else's bucket of that name?
                try:
                    self._client.head_bucket(Bucket=self.bucket)
                except (ClientError, BotoCoreError) as again:
                    raise self._error("cannot use", again) from None
        except (BotoCoreError, ValueError) as exc:
            raise self._error("cannot reach", exc) from None

    def _error(self, doing: str, exc: Exception) -> StorageError:
        if isinstance(exc, EndpointConnectionError):
            return StorageError(
                f"S3 {self._where}: the endpoint is unreachable ({exc}); is the object store "
                "running and the endpoint right?"
            )
        if isinstance(exc, NoCredentialsError):
            return StorageError(
                f"S3 {self._where}: no credentials; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY in the hub's environment"
            )
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code in _MISSING_BUCKET:
                return StorageError(f"S3 {self._where}: the bucket does not exist (any more)")
            if code in _DENIED and self._bucket_missing():
                # some stores (SeaweedFS) deny a write to a missing bucket rather than say so
                return StorageError(f"S3 {self._where}: the bucket does not exist (any more)")
            if code in _DENIED:
                return StorageError(
                    f"S3 {self._where}: access denied ({code}); check the hub's credentials "
                    "and the bucket's policy"
                )
            message = exc.response.get("Error", {}).get("Message") or code
            return StorageError(f"S3 {self._where}: {doing} ({code}: {message})")
        return StorageError(f"S3 {self._where}: {doing} ({type(exc).__name__}: {exc})")

    def _bucket_missing(self) -> bool:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            return _code(exc) in {"404", "NoSuchBucket", "NotFound"}
        except BotoCoreError:
            return False
        return False

    def _object(self, key: str) -> str:
        return self.prefix + check_key(key)

    # -- Blobs ---------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``; returns once the store acknowledged it (200)."""
        name = self._object(key)
        try:
            answer = self._client.put_object(Bucket=self.bucket, Key=name, Body=bytes(data))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(f"cannot store {key}", exc) from None
        status = answer.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status != 200:
            raise StorageError(f"S3 {self._where}: storing {key} answered {status}, not 200")

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; KeyError if there are none."""
        name = self._object(key)
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=name)
            return answer["Body"].read()
        except ClientError as exc:
            if _code(exc) in _MISSING_KEY:
                raise KeyError(key) from None
            raise self._error(f"cannot read {key}", exc) from None
        except BotoCoreError as exc:
            raise self._error(f"cannot read {key}", exc) from None

    def delete(self, key: str) -> None:
        """Remove ``key``; nothing happens if it is absent (S3 answers 204 either way)."""
        name = self._object(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if _code(exc) in _MISSING_KEY:
                return
            raise self._error(f"cannot delete {key}", exc) from None
        except BotoCoreError as exc:
            raise self._error(f"cannot delete {key}", exc) from None

    def keys(self, prefix: str) -> list[str]:
        """Every key starting with ``prefix``, sorted; every page of the listing."""
        found: list[str] = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket,
                Prefix=self.prefix + prefix,
                PaginationConfig={"PageSize": self.page_size},
            )
            for page in pages:
                found.extend(item["Key"][len(self.prefix) :] for item in page.get("Contents", []))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(f"cannot list {prefix!r}", exc) from None
        return sorted(found)

    def close(self) -> None:
        """Release the client's connections; idempotent."""
        self._client.close()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
