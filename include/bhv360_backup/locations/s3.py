"""The cloud location: an S3 (or S3-compatible) bucket, written with multipart uploads."""

from __future__ import annotations

import base64
import hashlib
import logging
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from botocore.exceptions import ClientError

from bhv360_backup.errors import BackupError, IntegrityError
from bhv360_backup.locations.base import (
    CHUNK_SIZE,
    ArtifactMissing,
    ArtifactWriter,
    Location,
    StoredObject,
)
from bhv360_backup.paths import check_relative_path
from bhv360_backup.s3_listing import check_listing_pages

log = logging.getLogger(__name__)

MIN_PART_SIZE = 8 << 20
MAX_PART_SIZE = 5 << 30
PARTS_PER_SIZE_STEP = 1000
PART_MEMORY_LIMIT = 16 << 20
BLOB_MEMORY_LIMIT = 8 << 20
UPLOADS_IN_FLIGHT = 4
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_ALREADY_THERE = {"PreconditionFailed", "412"}
_CONCURRENT_WRITE = {"ConditionalRequestConflict", "409"}


def part_size(part_number: int) -> int:
    """Size of part ``part_number`` (1-based): 8 MiB, doubling every 1,000 parts.

    10,000 parts then hold about 8 TiB, past S3's 5 TiB object limit, while a
    small dump still goes up in 8 MiB parts.
    """
    return min(MIN_PART_SIZE << ((part_number - 1) // PARTS_PER_SIZE_STEP), MAX_PART_SIZE)


@dataclass(frozen=True)
class ObjectLock:
    """Object Lock for every object written: ``mode`` GOVERNANCE or COMPLIANCE, kept ``days`` days."""

    mode: str
    days: int

    def until(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(days=self.days)

    def put_args(self) -> dict[str, Any]:
        return {"ObjectLockMode": self.mode, "ObjectLockRetainUntilDate": self.until()}


def _code(error: ClientError) -> str | None:
    return error.response.get("Error", {}).get("Code")


def _is_not_found(error: ClientError) -> bool:
    return _code(error) in _NOT_FOUND


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


class S3Writer(ArtifactWriter):
    """Buffers one part at a time (spilling to disk past 16 MiB) and uploads parts in the background.

    A stream shorter than one part is sent with a single PUT; a longer one as a multipart
    upload that only becomes an object on :meth:`commit` and is aborted on :meth:`abort`.
    Every part's SHA-256 is computed here and must be the one S3 reports for what it received; the
    receipt is the object's checksum (of the whole, or of the parts' checksums) as S3 keeps it.
    """

    def __init__(self, client: Any, bucket: str, key: str, put_args: dict[str, Any], *, if_absent: bool = False) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._put_args = put_args
        self._condition = {"IfNoneMatch": "*"} if if_absent else {}
        self._upload_id: str | None = None
        self._part_number = 1
        self._part = tempfile.SpooledTemporaryFile(max_size=PART_MEMORY_LIMIT)
        self._part_bytes = 0
        self._part_hash = hashlib.sha256()
        self._part_digests: dict[int, bytes] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: list[Future] = []
        self._done_parts: list[dict[str, Any]] = []
        self._closed = False
        self._receipt: str | None = None

    def write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            room = part_size(self._part_number) - self._part_bytes
            piece = view[:room]
            self._part.write(piece)
            self._part_hash.update(piece)
            self._part_bytes += len(piece)
            view = view[len(piece) :]
            if self._part_bytes == part_size(self._part_number):
                self._send_part()

    def _send_part(self) -> None:
        if self._upload_id is None:
            response = self._client.create_multipart_upload(Bucket=self._bucket, Key=self._key, **self._put_args)
            self._upload_id = response["UploadId"]
            self._pool = ThreadPoolExecutor(UPLOADS_IN_FLIGHT, thread_name_prefix="s3-part")
        while len(self._in_flight) >= UPLOADS_IN_FLIGHT:
            self._done_parts.append(self._in_flight.pop(0).result())
        part, number = self._part, self._part_number
        part.seek(0)
        self._part_digests[number] = self._part_hash.digest()
        self._in_flight.append(self._pool.submit(self._upload_part, part, number))
        self._part = tempfile.SpooledTemporaryFile(max_size=PART_MEMORY_LIMIT)
        self._part_hash = hashlib.sha256()
        self._part_bytes = 0
        self._part_number += 1

    def _upload_part(self, body: Any, number: int) -> dict[str, Any]:
        with body:
            expected = _b64(self._part_digests[number])
            # S3 refuses a part whose bytes do not have the checksum sent with it (botocore need not hash it again)
            response = self._client.upload_part(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=body,
                ChecksumSHA256=expected,
            )
        self._check(response.get("ChecksumSHA256"), expected, f"part {number}")
        return {"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": expected}

    def _check(self, reported: str | None, expected: str, what: str) -> None:
        if reported is not None and reported != expected:
            raise IntegrityError(f"s3://{self._bucket}/{self._key}: S3 reports SHA-256 {reported} for {what}, "
                                 f"sent {expected}")

    def commit(self) -> None:
        if self._closed:
            raise BackupError(f"commit of s3://{self._bucket}/{self._key} after commit or abort")
        if self._upload_id is None:
            self._part.seek(0)
            response = self._client.put_object(Bucket=self._bucket, Key=self._key, Body=self._part,
                                               **self._put_args, **self._condition)
            self._part.close()
            expected = _b64(self._part_hash.digest())
            self._check(response.get("ChecksumSHA256"), expected, "the object")
            self._receipt = expected if response.get("ChecksumSHA256") else None
        else:
            if self._part_bytes:
                self._send_part()
            self._done_parts.extend(future.result() for future in self._in_flight)
            self._in_flight.clear()
            digests = [self._part_digests[number] for number in sorted(self._part_digests)]
            self._receipt = f"{_b64(hashlib.sha256(b''.join(digests)).digest())}-{len(digests)}"
            self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": sorted(self._done_parts, key=lambda part: part["PartNumber"])},
                **self._condition,
            )
            self._pool.shutdown()
            if "ObjectLockMode" in self._put_args:
                # S3 applies the lock of the upload; some S3-compatible servers need it set on the object
                self._client.put_object_retention(Bucket=self._bucket, Key=self._key, Retention={
                    "Mode": self._put_args["ObjectLockMode"],
                    "RetainUntilDate": self._put_args["ObjectLockRetainUntilDate"],
                })
        self._closed = True

    def receipt(self) -> str | None:
        return self._receipt

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._part.close()
        if self._pool is not None:
            for future in self._in_flight:
                future.cancel()
            self._pool.shutdown(wait=True)
        if self._upload_id is not None:
            try:
                self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
            except Exception as error:  # noqa: BLE001 - retention aborts uploads left open (abort_unfinished)
                log.warning("could not abort the upload of s3://%s/%s: %s", self._bucket, self._key, error)


class S3BlobWriter(ArtifactWriter):
    """Spools an object (in memory up to 8 MiB, then on disk) and, once its content names it, uploads it
    to that key only if no object has it yet (``If-None-Match: *``): one request for most objects, and
    never a half object under a final name."""

    def __init__(self, client: Any, bucket: str, put_args: dict[str, Any], key_of: Callable[[], str | None]) -> None:
        self._client = client
        self._bucket = bucket
        self._put_args = put_args
        self._key_of = key_of
        self._spool = tempfile.SpooledTemporaryFile(max_size=BLOB_MEMORY_LIMIT)

    def write(self, chunk: bytes) -> None:
        self._spool.write(chunk)

    def commit(self) -> None:
        with self._spool:
            key = self._key_of()
            if key is None:
                return
            key = check_relative_path(key)
            size = self._spool.tell()
            self._spool.seek(0)
            try:
                if size <= MIN_PART_SIZE:
                    self._client.put_object(Bucket=self._bucket, Key=key, Body=self._spool, IfNoneMatch="*",
                                            **self._put_args)
                else:
                    upload = S3Writer(self._client, self._bucket, key, self._put_args, if_absent=True)
                    try:
                        while chunk := self._spool.read(CHUNK_SIZE):
                            upload.write(chunk)
                        upload.commit()
                    except BaseException:
                        upload.abort()
                        raise
            except ClientError as error:
                if _code(error) in _ALREADY_THERE:
                    return  # the same content, stored by another run or thread
                if _code(error) in _CONCURRENT_WRITE and self._size_of(key) == size:
                    return
                raise

    def _size_of(self, key: str) -> int | None:
        try:
            return self._client.head_object(Bucket=self._bucket, Key=key)["ContentLength"]
        except ClientError:
            return None

    def abort(self) -> None:
        self._spool.close()


class S3Location(Location):
    """Objects in ``bucket`` under their keys; ``client`` is a boto3 S3 client, the location's own: its
    listing pages are checked by :func:`~bhv360_backup.s3_listing.check_listing_pages`."""

    name = "s3"

    def __init__(
        self, client: Any, bucket: str, put_args: dict[str, Any] | None = None, lock: ObjectLock | None = None
    ) -> None:
        self.client = check_listing_pages(client)
        self.bucket = bucket
        self.put_args = dict(put_args or {})
        self.lock = lock

    def describe(self) -> str:
        return f"s3://{self.bucket}"

    def _upload_args(self) -> dict[str, Any]:
        """Every upload carries a SHA-256 checksum S3 verifies, the configured server-side encryption
        and, with Object Lock, a retain-until date ``lock.days`` from now."""
        return {**self.put_args, "ChecksumAlgorithm": "SHA256", **(self.lock.put_args() if self.lock else {})}

    def open_writer(self, key: str, *, durable: bool = True) -> ArtifactWriter:
        return S3Writer(self.client, self.bucket, check_relative_path(key), self._upload_args())

    def open_blob_writer(self, folder: str, key_of: Callable[[], str | None]) -> ArtifactWriter:
        return S3BlobWriter(self.client, self.bucket, self._upload_args(), key_of)

    def flush(self) -> None:
        """Nothing to do: an S3 object is durable once its upload completed."""

    def read_chunks(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=check_relative_path(key))["Body"]
        except ClientError as error:
            if _is_not_found(error):
                raise ArtifactMissing(f"s3: {key} is missing in s3://{self.bucket}") from None
            raise
        with body:
            yield from body.iter_chunks(chunk_size)

    def size_of(self, key: str) -> int | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=check_relative_path(key))["ContentLength"]
        except ClientError as error:
            if _is_not_found(error):
                return None
            raise

    def confirms(self, key: str, size: int, receipt: str) -> bool:
        """S3 keeps each object's SHA-256 (of the whole, or of its parts' checksums, ``-N`` after it):
        the same checksum and size as the upload's receipt prove the stored bytes without a download."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=check_relative_path(key), ChecksumMode="ENABLED")
        except ClientError as error:
            if _is_not_found(error):
                return False
            raise
        reported = head.get("ChecksumSHA256")
        return head["ContentLength"] == size and reported is not None \
            and reported.split("-")[0] == receipt.split("-")[0]

    def _objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", [])

    def iter_objects(self, prefix: str) -> Iterator[StoredObject]:
        for item in self._objects(prefix):
            yield StoredObject(item["Key"], item["Size"], item["LastModified"])

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=check_relative_path(key))

    def lock_until(self) -> datetime | None:
        return self.lock.until() if self.lock else None

    def extend_lock(self, key: str, until: datetime) -> None:
        if self.lock:
            self.client.put_object_retention(Bucket=self.bucket, Key=check_relative_path(key),
                                             Retention={"Mode": self.lock.mode, "RetainUntilDate": until})

    def locked_until(self, key: str) -> datetime | None:
        """The Object Lock retain-until date of ``key`` if it is still in the future."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=check_relative_path(key))
        except ClientError as error:
            if _is_not_found(error):
                return None
            raise
        until = head.get("ObjectLockRetainUntilDate")
        return until if until and until > datetime.now(timezone.utc) else None

    def abort_unfinished(self, before: datetime) -> int:
        """Abort every multipart upload of the bucket started before ``before`` (left by a killed or cut-off
        run: backups, blobs, reports alike); they hold storage without showing in any listing."""
        aborted = 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket):
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < before:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                    aborted += 1
        return aborted

    def delete_prefix(self, prefix: str) -> None:
        keys = [{"Key": item["Key"]} for item in self._objects(check_relative_path(prefix.rstrip("/")) + "/")]
        for start in range(0, len(keys), 1000):
            response = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys[start : start + 1000]})
            if response.get("Errors"):
                first = response["Errors"][0]
                raise BackupError(f"s3: could not delete {first['Key']}: {first.get('Message', first.get('Code'))}")
