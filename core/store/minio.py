"""The S3 object store (MinIO, AWS or any S3 endpoint) through the ``minio`` SDK."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlencode, urlsplit

import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.error import MinioException, S3Error
from minio.helpers import check_bucket_name
from urllib3.exceptions import HTTPError as Urllib3Error

from core.config import Settings
from core.errors import ConfigError, NotFound, StoreError, StoreUnavailable
from core.store.base import ObjectStore, check_key, check_prefix

# A down endpoint must fail in seconds: short connect timeout, two retries.
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 60.0
RETRIES = 2
DEFAULT_ENDPOINT = "https://s3.amazonaws.com"
_MISSING_CODES = {"NoSuchKey", "ResourceNotFound"}


class MinioStore(ObjectStore):
    """Objects in one bucket of an S3 endpoint; the bucket is created when missing."""

    def __init__(
        self,
        bucket: str,
        endpoint: str,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str | None = None,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"S3 endpoint {endpoint!r} must look like http://host:9000 or https://host."
            )
        self.bucket = bucket
        self.endpoint = endpoint
        self.region = region
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
            retries=urllib3.Retry(
                total=RETRIES, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)
            ),
            maxsize=10,
        )
        try:
            self.client = Minio(
                parts.netloc,
                access_key=access_key,
                secret_key=secret_key,
                secure=parts.scheme == "https",
                region=region,
                http_client=http,
            )
        except ValueError as exc:
            raise ConfigError(f"Invalid S3 store settings for {self.url}: {exc}") from None
        self._ensure_bucket()

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> MinioStore:
        """Open ``s3://bucket?endpoint=http://host:9000[&region=…]`` with the settings' keys."""
        parts = urlsplit(url)
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        unknown = set(query) - {"endpoint", "region"}
        if parts.scheme != "s3" or not parts.netloc or parts.path.strip("/") or unknown:
            raise ConfigError(
                f"Invalid store URL {url!r}: use s3://bucket?endpoint=http://host:9000 "
                "(optional &region=…)."
            )
        access = settings.s3_access_key
        secret = settings.s3_secret_key
        return cls(
            parts.netloc,
            query.get("endpoint", DEFAULT_ENDPOINT),
            access_key=access.get_secret_value() if access else None,
            secret_key=secret.get_secret_value() if secret else None,
            region=query.get("region") or settings.s3_region,
        )

    @property
    def url(self) -> str:
        query = {"endpoint": self.endpoint, **({"region": self.region} if self.region else {})}
        return f"s3://{self.bucket}?{urlencode(query, safe=':/')}"

    def url_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{check_key(key)}"

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn SDK and network errors into the project's store errors."""
        try:
            yield
        except S3Error as exc:
            if exc.code in _MISSING_CODES:
                raise NotFound(f"Cannot {action}: no such object in {self.url}.") from None
            raise StoreError(f"Cannot {action} in {self.url}: {exc.code}: {exc.message}") from exc
        except (Urllib3Error, OSError) as exc:
            raise StoreUnavailable(
                f"The S3 endpoint {self.endpoint} cannot be reached ({type(exc).__name__}). "
                "Check that the server is running, or fix the endpoint in CLASSIFI_STORE_URL."
            ) from exc
        except MinioException as exc:
            raise StoreError(f"Cannot {action} in {self.url}: {exc}") from exc

    def _ensure_bucket(self) -> None:
        try:
            check_bucket_name(self.bucket)
        except ValueError as exc:
            raise ConfigError(f"Invalid bucket name in the store URL {self.url}: {exc}") from None
        with self._errors(f"create bucket {self.bucket!r}"):
            if self.client.bucket_exists(self.bucket):
                return
            try:
                self.client.make_bucket(self.bucket, location=self.region)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise  # another process may have created it meanwhile

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        # One PUT (or one completed multipart upload): readers see all of it or nothing.
        with self._errors(f"write {key!r}"):
            self.client.put_object(
                self.bucket, check_key(key), io.BytesIO(data), len(data), content_type=content_type
            )

    def get(self, key: str) -> bytes:
        with self._errors(f"read {key!r}"):
            response = self.client.get_object(self.bucket, check_key(key))
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except NotFound:
            return False
        return True

    def size(self, key: str) -> int:
        with self._errors(f"read the size of {key!r}"):
            return int(self.client.stat_object(self.bucket, check_key(key)).size or 0)

    def list(self, prefix: str = "") -> Iterator[str]:
        check_prefix(prefix)
        with self._errors(f"list {prefix!r}"):
            # S3 lists keys in lexical (UTF-8 byte) order, as the interface promises.
            for item in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
                if item.object_name is not None:
                    yield item.object_name

    def copy(self, source: str, destination: str) -> None:
        with self._errors(f"copy {source!r} to {destination!r}"):
            self.client.copy_object(
                self.bucket, check_key(destination), CopySource(self.bucket, check_key(source))
            )

    def delete(self, key: str) -> None:
        with self._errors(f"delete {key!r}"):
            self.client.remove_object(self.bucket, check_key(key))  # absent: S3 says 204 too

    def ping(self) -> None:
        with self._errors(f"reach bucket {self.bucket!r}"):
            if not self.client.bucket_exists(self.bucket):
                raise StoreUnavailable(
                    f"The bucket {self.bucket!r} no longer exists at {self.endpoint}."
                )
