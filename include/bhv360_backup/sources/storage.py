"""Storage as a backup source: buckets and their objects, listed fully and streamed one by one.

Three sources share one interface: Supabase Storage (the ``supabase`` client for listings, an
authenticated streaming GET for contents), any S3-compatible endpoint, and a local folder whose
sub-folders are buckets.
"""

from __future__ import annotations

import mimetypes
import os
import random
import stat
import threading
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from bhv360_backup.errors import BackupError, first_line
from bhv360_backup.locations.base import CHUNK_SIZE

T = TypeVar("T")
SUPABASE_PAGE = 1000
LISTING_THREADS = 8  # folder pages of one bucket listed at once
RETRIES = 4
RETRY_BASE_DELAY_S = 0.5


class ObjectGone(BackupError):
    """The object was deleted at the source after it was listed."""


class TransientSourceError(BackupError):
    """A failure worth retrying: a 5xx, a 429, a dropped connection."""


@dataclass(frozen=True)
class BucketInfo:
    id: str
    public: bool = False
    file_size_limit: int | None = None
    allowed_mime_types: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object; ``etag``, ``size`` and ``updated_at`` decide whether it changed."""

    bucket: str
    path: str
    size: int
    etag: str
    updated_at: str
    content_type: str | None = None
    cache_control: str | None = None
    id: str | None = None  # Supabase's storage.objects id, which names a deleted object in the change stream


@dataclass
class OpenedObject:
    chunks: Iterator[bytes]
    content_type: str | None
    cache_control: str | None


def with_retries(action: Callable[[], T], what: str, attempts: int = RETRIES) -> T:
    """Run ``action``, retrying :class:`TransientSourceError` with exponential backoff and jitter."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except TransientSourceError as error:
            if attempt == attempts:
                raise BackupError(f"{what}: still failing after {attempts} tries: {error}") from None
            time.sleep(RETRY_BASE_DELAY_S * 2 ** (attempt - 1) * (0.5 + random.random()))
    raise AssertionError("unreachable")


class StorageSource(ABC):
    @abstractmethod
    def describe(self) -> str: ...

    @abstractmethod
    def list_buckets(self) -> list[BucketInfo]: ...

    @abstractmethod
    def list_objects(self, bucket: str) -> Iterator[ObjectInfo]: ...

    @abstractmethod
    def open_object(self, obj: ObjectInfo) -> OpenedObject:
        """Start streaming an object; raises :class:`ObjectGone` if it no longer exists."""


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class LocalFolderSource(StorageSource):
    """Each sub-folder of ``root`` is a bucket; files below it are its objects."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return f"folder {self.root}"

    def list_buckets(self) -> list[BucketInfo]:
        if not self.root.is_dir():
            raise BackupError(f"storage source folder {self.root} does not exist")
        return [BucketInfo(entry.name) for entry in sorted(self.root.iterdir()) if entry.is_dir()]

    def list_objects(self, bucket: str) -> Iterator[ObjectInfo]:
        """Regular files only (no symlinks), one ``lstat`` each; a file removed meanwhile is left out."""
        base = self.root / bucket
        folders = [""]
        while folders:
            prefix = folders.pop()
            with os.scandir(base / prefix) as found:
                entries = sorted(found, key=lambda entry: entry.name)
            for entry in entries:
                path = f"{prefix}{entry.name}"
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    folders.append(f"{path}/")
                elif stat.S_ISREG(info.st_mode):
                    yield ObjectInfo(
                        bucket=bucket,
                        path=path,
                        size=info.st_size,
                        etag=f"{info.st_mtime_ns:x}-{info.st_size:x}",
                        updated_at=_iso(datetime.fromtimestamp(info.st_mtime, timezone.utc)),
                        content_type=mimetypes.guess_type(entry.name)[0] or "application/octet-stream",
                    )

    def open_object(self, obj: ObjectInfo) -> OpenedObject:
        try:
            handle = (self.root / obj.bucket / obj.path).open("rb")
        except FileNotFoundError:
            raise ObjectGone(f"{obj.bucket}/{obj.path} was deleted during the run") from None

        def chunks() -> Iterator[bytes]:
            with handle:
                while chunk := handle.read(CHUNK_SIZE):
                    yield chunk

        return OpenedObject(chunks(), obj.content_type, obj.cache_control)


def native_addressable(key: str) -> bool:
    """Whether obstore reads exactly ``key``: its paths have no empty, ``.`` or ``..`` segment and no
    control character (it refuses those, and silently drops a leading or trailing ``/``, which would
    read another object). S3 keys may hold all of them: such keys are read by boto3."""
    return all(part not in ("", ".", "..") for part in key.split("/")) and not any(
        ord(character) < 0x20 or ord(character) == 0x7F for character in key)


class NativeS3Reader:
    """Object contents through obstore (Rust's ``object_store``): the request, TLS and the reading run
    outside the interpreter lock, which boto3's Python work per request holds (measured: the first
    snapshot of 3,000 objects 10.1 s with boto3, 5.6 s with this). Configured from the same connection
    as the boto3 client: endpoint, region, addressing style, TLS trust, and credentials asked of the
    connection's boto3 session, so assumed roles and their refresh stay Airflow's."""

    def __init__(self, *, endpoint: str | None, region: str | None, path_style: bool,
                 credentials: Callable[[], dict[str, Any]], root_certificate: str | None = None,
                 verify: bool = True) -> None:
        options: dict[str, Any] = {"allow_http": bool(endpoint and endpoint.startswith("http://"))}
        if root_certificate:
            options["root_certificate"] = root_certificate
        if not verify:
            options["allow_invalid_certificates"] = True
        self._config: dict[str, Any] = {"virtual_hosted_style_request": not path_style,
                                        **({"endpoint": endpoint} if endpoint else {}),
                                        **({"region": region} if region else {})}
        self._options = options
        self._credentials = credentials
        self._stores: dict[str, Any] = {}
        self._creating = threading.Lock()

    def _store(self, bucket: str) -> Any:
        """One store per bucket, made once: making one takes 5 ms with the interpreter lock held (its
        HTTP client and TLS trust), and a snapshot's threads all asked at once when it started."""
        from obstore.store import S3Store

        store = self._stores.get(bucket)
        if store is None:
            with self._creating:
                store = self._stores.get(bucket)
                if store is None:
                    store = self._stores[bucket] = S3Store(bucket, **self._config, client_options=self._options,
                                                           credential_provider=self._credentials)
        return store

    def open(self, obj: ObjectInfo) -> OpenedObject:
        import obstore
        from obstore.exceptions import NotFoundError, PermissionDeniedError, UnauthenticatedError

        what = f"{obj.bucket}/{obj.path}"
        try:
            result = obstore.get(self._store(obj.bucket), obj.path)
        except (NotFoundError, FileNotFoundError):  # obstore raises the built-in one for a 404
            raise ObjectGone(f"{what} was deleted during the run") from None
        except (PermissionDeniedError, UnauthenticatedError, PermissionError) as error:
            raise BackupError(f"{what}: the S3 source refused the read ({first_line(error)})") from None
        except Exception as error:  # noqa: BLE001 - 5xx after obstore's own retries, a dropped connection
            raise TransientSourceError(f"{what}: {first_line(error)}") from None
        attributes = result.attributes
        return OpenedObject((bytes(chunk) for chunk in result.stream(min_chunk_size=CHUNK_SIZE)),
                            attributes.get("Content-Type"), attributes.get("Cache-Control"))


class S3StorageSource(StorageSource):
    """Buckets of an S3-compatible endpoint (Supabase's S3 endpoint, MinIO, AWS): listed by boto3,
    contents read by ``native`` where given and the key is :func:`native_addressable`, else by boto3.
    The client is the source's own: its listing pages are checked by
    :func:`~bhv360_backup.s3_listing.check_listing_pages` (and read fast where it was made from a
    session :func:`~bhv360_backup.s3_listing.with_fast_listings` prepared)."""

    def __init__(self, client: Any, buckets: Sequence[str] | None = None, native: NativeS3Reader | None = None) -> None:
        from bhv360_backup.s3_listing import check_listing_pages

        self.client = check_listing_pages(client)
        self.buckets = list(buckets or [])
        self.native = native
        # made once: its model is loaded on first use, by every bucket's listing thread at once otherwise
        self._listing_pages = client.get_paginator("list_objects_v2")

    def describe(self) -> str:
        return f"S3 endpoint {self.client.meta.endpoint_url}"

    def list_buckets(self) -> list[BucketInfo]:
        names = self.buckets or [bucket["Name"] for bucket in self.client.list_buckets().get("Buckets", [])]
        return [BucketInfo(name) for name in sorted(names)]

    def list_objects(self, bucket: str) -> Iterator[ObjectInfo]:
        for page in self._listing_pages.paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                yield ObjectInfo(
                    bucket=bucket,
                    path=item["Key"],
                    size=item["Size"],
                    etag=item["ETag"].strip('"'),
                    updated_at=_iso(item["LastModified"]),
                )

    def open_object(self, obj: ObjectInfo) -> OpenedObject:
        from botocore.exceptions import ClientError

        if self.native is not None and native_addressable(obj.path):
            return self.native.open(obj)
        try:
            response = self.client.get_object(Bucket=obj.bucket, Key=obj.path)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404"):
                raise ObjectGone(f"{obj.bucket}/{obj.path} was deleted during the run") from None
            if code in ("SlowDown", "InternalError", "ServiceUnavailable", "503", "500"):
                raise TransientSourceError(f"{obj.bucket}/{obj.path}: {code}") from None
            raise
        body = response["Body"]

        def chunks() -> Iterator[bytes]:
            with body:
                yield from body.iter_chunks(CHUNK_SIZE)

        return OpenedObject(chunks(), response.get("ContentType"), response.get("CacheControl"))


def _supabase_object(bucket: str, path: str, entry: dict[str, Any]) -> ObjectInfo:
    meta = entry.get("metadata") or {}
    return ObjectInfo(
        bucket=bucket,
        path=path,
        size=int(meta.get("size") or meta.get("contentLength") or 0),
        etag=str(meta.get("eTag", "")).strip('"'),
        updated_at=entry.get("updated_at") or meta.get("lastModified") or "",
        content_type=meta.get("mimetype"),
        cache_control=meta.get("cacheControl"),
        id=entry.get("id"),
    )


class SupabaseStorageSource(StorageSource):
    """Supabase Storage: listings through the ``supabase`` client, contents by an authenticated stream.

    The client's ``download()`` returns the whole object as bytes, so contents are fetched with a
    streaming GET of ``/storage/v1/object/authenticated/{bucket}/{path}`` instead.
    """

    def __init__(self, url: str, service_key: str, buckets: Sequence[str] | None = None, timeout: float = 60,
                 listing_threads: int = LISTING_THREADS) -> None:
        import httpx
        from supabase import create_client

        self.url = url.rstrip("/")
        self.buckets = list(buckets or [])
        self.listing_threads = max(1, listing_threads)
        self._client = create_client(self.url, service_key)
        self._http = httpx.Client(
            base_url=f"{self.url}/storage/v1",
            headers={"Authorization": f"Bearer {service_key}", "apikey": service_key},
            timeout=timeout,
        )

    def describe(self) -> str:
        return f"Supabase Storage at {self.url}"

    def _api(self, action: Callable[[], T], what: str) -> T:
        from storage3.exceptions import StorageApiError

        def attempt() -> T:
            try:
                return action()
            except StorageApiError as error:
                if str(getattr(error, "status", "")) in ("429", "500", "502", "503", "504"):
                    raise TransientSourceError(f"{what}: {error.message}") from None
                raise BackupError(f"Supabase Storage {what}: {error.message} ({error.status})") from None

        return with_retries(attempt, what)

    def list_buckets(self) -> list[BucketInfo]:
        buckets = self._api(self._client.storage.list_buckets, "listing buckets")
        found = [
            BucketInfo(b.id, bool(b.public), b.file_size_limit, list(b.allowed_mime_types or []) or None)
            for b in buckets
        ]
        if self.buckets:
            missing = set(self.buckets) - {b.id for b in found}
            if missing:
                raise BackupError(f"Supabase Storage has no bucket {', '.join(sorted(missing))}")
            found = [b for b in found if b.id in self.buckets]
        return sorted(found, key=lambda b: b.id)

    def _page(self, bucket: str, prefix: str, offset: int) -> list[dict[str, Any]]:
        api = self._client.storage.from_(bucket)
        options = {"limit": SUPABASE_PAGE, "offset": offset, "sortBy": {"column": "name", "order": "asc"}}
        return self._api(lambda: api.list(prefix, options), f"listing {bucket}/{prefix}")

    def list_objects(self, bucket: str) -> Iterator[ObjectInfo]:
        """Walk the bucket folder by folder (v1 list returns one level), ``listing_threads`` pages at a
        time: a bucket of many small folders costs one round trip per folder."""
        to_list = [("", 0)]  # (folder, offset) pages still to list; last in, first out keeps it short
        with ThreadPoolExecutor(self.listing_threads, thread_name_prefix=f"list-{bucket}") as pool:
            listing: dict[Future, tuple[str, int]] = {}
            while to_list or listing:
                while to_list and len(listing) < self.listing_threads:
                    prefix, offset = to_list.pop()
                    listing[pool.submit(self._page, bucket, prefix, offset)] = (prefix, offset)
                done, _ = wait(listing, return_when=FIRST_COMPLETED)
                for future in done:
                    prefix, offset = listing.pop(future)
                    page = future.result()
                    if len(page) == SUPABASE_PAGE:
                        to_list.append((prefix, offset + len(page)))
                    for entry in page:
                        path = f"{prefix}/{entry['name']}" if prefix else entry["name"]
                        if entry.get("id") is None:
                            to_list.append((path, 0))
                        else:
                            yield _supabase_object(bucket, path, entry)

    def open_object(self, obj: ObjectInfo) -> OpenedObject:
        quoted = urllib.parse.quote(f"{obj.bucket}/{obj.path}", safe="/")
        request = self._http.build_request("GET", f"/object/authenticated/{quoted}")
        response = self._http.send(request, stream=True)
        if response.status_code == 200:

            def chunks() -> Iterator[bytes]:
                try:
                    yield from response.iter_bytes(CHUNK_SIZE)
                finally:
                    response.close()

            return OpenedObject(
                chunks(), response.headers.get("content-type"), response.headers.get("cache-control")
            )
        body = response.read().decode(errors="replace")
        response.close()
        if response.status_code in (400, 404) and ("not_found" in body or "Object not found" in body):
            raise ObjectGone(f"{obj.bucket}/{obj.path} was deleted during the run")
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientSourceError(f"{obj.bucket}/{obj.path}: HTTP {response.status_code}")
        raise BackupError(f"Supabase Storage refused {obj.bucket}/{obj.path}: HTTP {response.status_code} {body[:200]}")
