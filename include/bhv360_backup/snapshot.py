"""Storage snapshots: content-addressed blobs shared between snapshots, and a per-snapshot index.

Each object's bytes are stored once per location as ``blobs/sha256/<2 hex>/<sha256>``, so
``sha256sum`` alone verifies a blob and unchanged objects cost nothing in a new snapshot. A
snapshot is ``storage/<backup_id>/`` holding ``objects.jsonl.gz`` (one JSON line per object:
bucket, path, sha256, size, content type, cache control, source etag, updated time),
``blobs.jsonl.gz`` (the same rows without names: what retention, health checks and the next
snapshot read, never needing a key) and the manifest, which also records the bucket definitions.
A blob is uploaded once, straight to its final name once its sha256 is known (a conditional write:
an object already there is kept); only garbage collection (after retention) removes blobs.

Encrypted blobs live in a blob space of their recipients, ``blobs/age-<hash of the recipients>/``:
plain blobs are never reused by an encrypted snapshot, and after a key rotation the next snapshot
encrypts every object to the new key, while older snapshots keep their blobs until they expire.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta

from pyrage.x25519 import Identity, Recipient

from bhv360_backup.backup import BackupWriter
from bhv360_backup.errors import BackupError, IntegrityError, first_line
from bhv360_backup.layout import BackupType
from bhv360_backup.locations.base import (
    STAGING_PREFIX,
    ArtifactMissing,
    ArtifactWriter,
    Location,
    StoredObject,
)
from bhv360_backup.manifest import Manifest, iso, parse_iso, utc_now
from bhv360_backup.repository.locks import exclusive_lock, shared_lock
from bhv360_backup.sources.storage import (
    ObjectGone,
    ObjectInfo,
    StorageSource,
    TransientSourceError,
    with_retries,
)
from bhv360_backup.streams import Digest, copy_stream, gzip_json_lines
from bhv360_backup.verify import read_json_lines_artifact

log = logging.getLogger(__name__)

INDEX_ARTIFACT = "objects.jsonl.gz"
BLOBS_ARTIFACT = "blobs.jsonl.gz"
BLOBS_ROOT = "blobs/"
PLAIN_SPACE = "sha256"
BLOB_PREFIX = f"{BLOBS_ROOT}{PLAIN_SPACE}/"
LEGACY_INCOMING_PREFIX = f"{BLOBS_ROOT}incoming/"  # staging of releases before 0.3
STAGING_MAX_AGE = timedelta(hours=24)
BLOB_GRACE = timedelta(hours=48)
DEFAULT_PARALLELISM = 8


def blob_key(sha256: str, space: str | None = None) -> str:
    return f"{BLOBS_ROOT}{space or PLAIN_SPACE}/{sha256[:2]}/{sha256}"


def blob_space(recipients: Sequence[Recipient]) -> str | None:
    """The blob space of blobs encrypted to ``recipients``; None (plain blobs) without recipients."""
    if not recipients:
        return None
    return "age-" + hashlib.sha256("\n".join(sorted(map(str, recipients))).encode()).hexdigest()[:16]


def source_fingerprint(bucket: str, path: str, etag: str, size: int, updated_at: str) -> str:
    """Identifies an object's state at the source without naming it: the key of reuse between snapshots."""
    return hashlib.sha256(json.dumps([bucket, path, etag, size, updated_at]).encode()).hexdigest()


_NAMES = ("bucket", "path", "etag", "updated_at")
_OMITTED_WHEN_EMPTY = ("locked_until", "stored_sha256")  # fields added in 0.3: older indexes stay as they were


@dataclass(frozen=True)
class IndexEntry:
    """One object of a snapshot; ``sha256`` and ``size`` are of its plain bytes. An encrypted blob
    lives in ``space`` and takes ``stored_size`` bytes."""

    bucket: str
    path: str
    sha256: str
    size: int
    content_type: str | None
    cache_control: str | None
    etag: str
    updated_at: str
    md5: str | None = None
    space: str | None = None
    stored_size: int | None = None
    locked_until: str | None = None  # the Object Lock date of its blob in a locked location
    stored_sha256: str | None = None  # of an encrypted blob's stored bytes: verifiable without the key

    @property
    def blob_key(self) -> str:
        return blob_key(self.sha256, self.space)

    @property
    def stored_bytes(self) -> int:
        return self.size if self.stored_size is None else self.stored_size

    @property
    def encrypted(self) -> bool:
        return self.space is not None

    @property
    def source(self) -> str:
        return source_fingerprint(self.bucket, self.path, self.etag, self.size, self.updated_at)

    def row(self) -> dict:
        """This entry as a row of ``objects.jsonl.gz`` (its fields are plain values: no deep copy)."""
        return {name: getattr(self, name) for name in _FIELDS
                if name not in _OMITTED_WHEN_EMPTY or getattr(self, name) is not None}

    def blob_row(self) -> dict:
        """This entry without the object's names, for ``blobs.jsonl.gz``."""
        return {"source": self.source, **{name: value for name, value in self.row().items() if name not in _NAMES}}

    @classmethod
    def reuse(cls, obj: ObjectInfo, row: dict) -> IndexEntry:
        """The entry of an unchanged object, from the blob row its fingerprint found."""
        fields = {key: value for key, value in row.items() if key != "source"}
        return cls(bucket=obj.bucket, path=obj.path, etag=obj.etag, updated_at=obj.updated_at, **fields)


_FIELDS = tuple(f.name for f in fields(IndexEntry))


def read_index(location: Location, manifest: Manifest, identities: Sequence[Identity] = ()) -> Iterator[IndexEntry]:
    """The entries of a stored snapshot, after checking the index (decrypted with ``identities``)."""
    for row in read_json_lines_artifact(location, manifest, INDEX_ARTIFACT, identities):
        yield IndexEntry(**row)


def stored_size(row: dict) -> int:
    """The bytes a blob row's blob takes in a location (its plain size unless encrypted)."""
    return row["size"] if row.get("stored_size") is None else row["stored_size"]


def read_blob_rows(location: Location, manifest: Manifest) -> Iterator[dict]:
    """The name-free rows of a stored snapshot: readable without a key."""
    if BLOBS_ARTIFACT not in {artifact.path for artifact in manifest.artifacts}:
        # a snapshot made before blobs.jsonl.gz existed: its index is plain and holds the same rows
        return (entry.blob_row() for entry in read_index(location, manifest))
    return read_json_lines_artifact(location, manifest, BLOBS_ARTIFACT)


@dataclass
class SnapshotStats:
    seen: int = 0
    downloaded: int = 0
    reused: int = 0
    skipped: int = 0
    bytes_transferred: int = 0
    seconds: float = 0.0
    skipped_objects: list[str] = field(default_factory=list)

    @property
    def mb_per_s(self) -> float:
        return round(self.bytes_transferred / 1e6 / self.seconds, 2) if self.seconds else 0.0

    def to_dict(self) -> dict:
        return {
            "seen": self.seen,
            "downloaded": self.downloaded,
            "reused": self.reused,
            "skipped": self.skipped,
            "bytes_transferred": self.bytes_transferred,
            "mb_per_s": self.mb_per_s,
            "skipped_objects": self.skipped_objects[:100],
        }


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int
    stored_size: int
    stored_sha256: str
    locked_until: str | None = None


class _BlobStore:
    """The blob space of the live locations of one snapshot run (plain, or of the writer's recipients)."""

    def __init__(self, writer: BackupWriter) -> None:
        self.writer = writer
        self.space = blob_space(writer.recipients)
        self.folder = f"{BLOBS_ROOT}{self.space or PLAIN_SPACE}/"
        self.known: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()
        self.locked = [location for location in writer.live if location.lock_until() is not None]
        for location in writer.live:
            try:
                self.known[location.name] = {
                    item.key.rsplit("/", 1)[-1]: item.size for item in location.iter_objects(self.folder)
                }
            except Exception as error:  # noqa: BLE001 - recorded; the other locations go on
                writer.drop(location, f"cannot list blobs: {first_line(error)}")

    def has(self, row: dict) -> bool:
        if row.get("space") != self.space:
            return False
        return all(self.known.get(location.name, {}).get(row["sha256"]) == stored_size(row)
                   for location in self.writer.live)

    def store(self, chunks: Iterator[bytes]) -> StoredBlob:
        """Stream an object into every live location's blob space, each copy written once, straight to
        the key its content names (none where that blob is already stored); return its sizes."""
        stored = Digest()
        locked_until = min((location.lock_until() for location in self.locked), default=None)
        if self.writer.encrypted:
            sealed, plain = self.writer.seal(chunks)
        else:
            sealed, plain = chunks, stored

        def key_of(location: Location) -> str | None:
            with self._lock:
                present = self.known[location.name].get(plain.sha256) == stored.size
            return None if present else blob_key(plain.sha256, self.space)

        def open_writer(location: Location) -> ArtifactWriter:
            return location.open_blob_writer(self.folder, lambda: key_of(location))

        _, written = self.writer.stream_everywhere(open_writer, sealed, "a blob", digest=stored)
        with self._lock:
            for location in written:
                self.known[location.name][plain.sha256] = stored.size
        return StoredBlob(plain.sha256, plain.size, stored.size, stored.sha256,
                          iso(locked_until) if locked_until else None)

    def keep_locked(self, entry: IndexEntry) -> IndexEntry:
        """A reused blob stays locked as long as the new backup: its Object Lock is extended once less
        than half the lock period is left (so each blob is extended about twice a period, not every run)."""
        if not self.locked:
            return entry
        now = utc_now()
        until = min(location.lock_until() for location in self.locked)
        if entry.locked_until and parse_iso(entry.locked_until) - now >= (until - now) / 2:
            return entry
        for location in self.locked:
            try:
                location.extend_lock(entry.blob_key, until)
            except Exception as error:  # noqa: BLE001 - recorded; the other locations go on
                self.writer.drop(location, f"extending the Object Lock of blob {entry.sha256}: {first_line(error)}")
        return replace(entry, locked_until=iso(until))


def previous_blobs(locations: Sequence[Location]) -> dict[str, dict]:
    """The blob rows of the newest complete snapshot by source fingerprint, from the first location
    that has a readable one."""
    for location in locations:
        try:
            ids = location.list_backups(BackupType.STORAGE)
            if ids:
                manifest = location.read_manifest(BackupType.STORAGE, ids[-1])
                return {row["source"]: row for row in read_blob_rows(location, manifest)}
        except Exception as error:  # noqa: BLE001 - then every object is downloaded again
            log.warning("previous snapshot in %s unreadable (%s); downloading everything", location.name, error)
    return {}


def take_snapshot(
    source: StorageSource,
    writer: BackupWriter,
    *,
    dag_id: str,
    run_id: str,
    parallelism: int = DEFAULT_PARALLELISM,
) -> tuple[Manifest, SnapshotStats]:
    """Snapshot every bucket of ``source`` into the writer's locations and publish the manifest."""
    reused_manifest = writer.resume(copy_extra=copy_snapshot_blobs)
    if reused_manifest is not None:
        log.info("storage snapshot %s was completed by an earlier try; reusing it", writer.backup_id)
        return reused_manifest, SnapshotStats()
    try:
        with shared_lock(writer.live, run_id):
            return _snapshot(source, writer, dag_id=dag_id, run_id=run_id, parallelism=parallelism)
    except BaseException:
        writer.discard()
        raise


def _snapshot(
    source: StorageSource, writer: BackupWriter, *, dag_id: str, run_id: str, parallelism: int
) -> tuple[Manifest, SnapshotStats]:
    stats = SnapshotStats()
    started = time.monotonic()
    previous = previous_blobs(writer.live)
    blobs = _BlobStore(writer)
    listing_started = utc_now()
    buckets = source.list_buckets()
    with ThreadPoolExecutor(max(1, min(len(buckets), parallelism)), thread_name_prefix="list") as pool:
        listings = list(pool.map(lambda bucket: list(source.list_objects(bucket.id)), buckets))
    objects = [obj for listing in listings for obj in listing]
    listing_completed = utc_now()
    stats.seen = len(objects)
    entries: dict[tuple[str, str], IndexEntry] = {}
    failures: list[str] = []
    lock = threading.Lock()

    def transfer(obj: ObjectInfo) -> None:
        def attempt() -> tuple[str, int, str | None, str | None, str]:
            md5 = hashlib.md5(usedforsecurity=False)
            try:
                opened = source.open_object(obj)
                blob = blobs.store(md5.update(chunk) or chunk for chunk in opened.chunks)
            except (ObjectGone, TransientSourceError, BackupError):
                raise
            except Exception as error:  # noqa: BLE001 - a dropped connection or timeout mid-stream
                raise TransientSourceError(f"{obj.bucket}/{obj.path}: {first_line(error)}") from None
            return blob, opened.content_type, opened.cache_control, md5.hexdigest()

        try:
            blob, content_type, cache_control, md5 = with_retries(attempt, f"{obj.bucket}/{obj.path}")
        except ObjectGone:
            with lock:
                stats.skipped += 1
                stats.skipped_objects.append(f"{obj.bucket}/{obj.path}")
            return
        except Exception as error:  # noqa: BLE001 - the task fails after the other objects finish
            with lock:
                failures.append(f"{obj.bucket}/{obj.path}: {first_line(error)}")
            return
        entry = IndexEntry(obj.bucket, obj.path, blob.sha256, blob.size, obj.content_type or content_type,
                           obj.cache_control or cache_control, obj.etag, obj.updated_at, md5, blobs.space,
                           blob.stored_size if blobs.space else None, blob.locked_until,
                           blob.stored_sha256 if blobs.space else None)
        with lock:
            entries[(obj.bucket, obj.path)] = entry
            stats.downloaded += 1
            stats.bytes_transferred += blob.size

    def reuse(obj: ObjectInfo, row: dict) -> None:
        entry = blobs.keep_locked(IndexEntry.reuse(obj, row))
        with lock:
            entries[(obj.bucket, obj.path)] = entry
            stats.reused += 1

    to_download, to_reuse = [], []
    for obj in objects:
        earlier = previous.get(source_fingerprint(obj.bucket, obj.path, obj.etag, obj.size, obj.updated_at))
        if earlier and blobs.has(earlier):
            to_reuse.append((obj, earlier))
        else:
            to_download.append(obj)
    if blobs.locked:
        with ThreadPoolExecutor(max(1, parallelism), thread_name_prefix="lock") as pool:
            for _ in pool.map(lambda pair: reuse(*pair), to_reuse):
                pass
    else:
        for obj, row in to_reuse:  # no request to make: inline
            reuse(obj, row)
    with ThreadPoolExecutor(max(1, parallelism), thread_name_prefix="snapshot") as pool:
        for _ in pool.map(transfer, to_download):
            pass
    stats.seconds = time.monotonic() - started
    if failures:
        raise BackupError(f"{len(failures)} object(s) could not be copied: " + "; ".join(failures[:10]))
    ordered = [entries[key] for key in sorted(entries)]
    for location in writer.live:
        location.flush()  # every blob durable before the index that names them
    writer.add(INDEX_ARTIFACT, gzip_json_lines(entry.row() for entry in ordered))
    writer.add(BLOBS_ARTIFACT, gzip_json_lines(entry.blob_row() for entry in ordered), encrypt=False)
    writer.verify()
    manifest = writer.publish(
        dag_id=dag_id,
        run_id=run_id,
        details={
            "source": source.describe(),
            "buckets": [bucket.to_dict() for bucket in buckets],
            "objects": len(ordered),
            "bytes": sum(entry.size for entry in ordered),
            "index": INDEX_ARTIFACT,
            "listing_started_at": iso(listing_started),
            "listing_completed_at": iso(listing_completed),
            "stats": stats.to_dict(),
        },
    )
    log.info("storage snapshot %s: %s", writer.backup_id, stats.to_dict())
    return manifest, stats


def _stored_blobs(location: Location, manifest: Manifest) -> dict[str, int]:
    """The blob keys a snapshot references, with their stored sizes."""
    return {blob_key(row["sha256"], row.get("space")): stored_size(row) for row in read_blob_rows(location, manifest)}


def copy_snapshot_blobs(manifest: Manifest, source: Location, target: Location) -> None:
    """Copy the blobs a snapshot references that ``target`` lacks (before its index and manifest)."""
    if manifest.type != BackupType.STORAGE:
        return
    present = {item.key: item.size for item in target.iter_objects(BLOBS_ROOT)}
    for key, size in _stored_blobs(source, manifest).items():
        if present.get(key) == size:
            continue
        result = copy_stream(source.read_chunks(key), {target.name: target.open_writer(key)})
        # an encrypted blob's content is authenticated when it is decrypted; its size is checked here
        plain_damaged = key.startswith(BLOB_PREFIX) and result.sha256 != key.rsplit("/", 1)[-1]
        if result.failed or result.size != size or plain_damaged:
            raise IntegrityError(f"copying blob {key} to {target.name} failed or did not match")
        present[key] = size


@dataclass(frozen=True)
class BlobExpectation:
    """What a stored blob must be: its stored size and, where known, the sha256 of its stored bytes
    (a plain blob's name; an encrypted blob's recorded ``stored_sha256``, since 0.3)."""

    key: str
    size: int
    sha256: str | None


def blob_expectations(location: Location, manifest: Manifest) -> list[BlobExpectation]:
    """The blobs a snapshot references, each once."""
    found = {}
    for row in read_blob_rows(location, manifest):
        key = blob_key(row["sha256"], row.get("space"))
        found[key] = BlobExpectation(key, stored_size(row), row["sha256"] if not row.get("space")
                                     else row.get("stored_sha256"))
    return list(found.values())


def read_back_blob(location: Location, blob: BlobExpectation) -> str | None:
    """Read a stored blob in full; the problem, or None when its size and sha256 are as expected."""
    digest = Digest()
    try:
        for chunk in location.read_chunks(blob.key):
            digest.update(chunk)
    except ArtifactMissing:
        return f"{location.name}: blob {blob.key} missing"
    if digest.size != blob.size:
        return f"{location.name}: blob {blob.key} is {digest.size} bytes, the snapshot says {blob.size}"
    if blob.sha256 is not None and digest.sha256 != blob.sha256:
        return f"{location.name}: blob {blob.key} sha256 {digest.sha256} differs"
    return None


def verify_snapshot_blobs(location: Location, manifest: Manifest, present: dict[str, int] | None = None) -> list[str]:
    """Every blob the snapshot references exists in ``location`` with its stored size (``present``:
    the location's blobs and sizes, when the caller listed them already)."""
    if present is None:
        present = {item.key: item.size for item in location.iter_objects(BLOBS_ROOT)}
    problems = []
    for key, size in _stored_blobs(location, manifest).items():
        found = present.get(key)
        if found != size:
            state = "missing" if found is None else f"{found} bytes, the snapshot says {size}"
            problems.append(f"{location.name}: blob {key} {state}")
    return problems


@dataclass
class GcReport:
    location: str
    removed: int = 0
    removed_bytes: int = 0
    skipped_reason: str | None = None


DELETE_BATCH = 100


def collect_garbage(location: Location, now: datetime, *, dry_run: bool, run_id: str = "retention") -> GcReport:
    """Remove blobs no complete snapshot references and older than the grace period, and stale staging.

    Holds an exclusive lock: does nothing while another run holds a lock in this location, and stops
    when one appears (checked right before each batch of deletions). Does nothing if any snapshot's
    index cannot be read (its references would be unknown).
    """
    report = GcReport(location.name)
    with exclusive_lock(location, run_id) as lock:
        if others := lock.others():
            report.skipped_reason = f"another run holds a lock: {others[0].describe()}"
            return report
        referenced: set[str] = set()
        for backup_id in location.list_backups(BackupType.STORAGE):
            try:
                manifest = location.read_manifest(BackupType.STORAGE, backup_id)
                referenced.update(_stored_blobs(location, manifest))
            except BackupError as error:
                report.skipped_reason = f"snapshot {backup_id} unreadable: {error}"
                return report
        garbage = [item for item in location.iter_objects(BLOBS_ROOT) if _is_garbage(item, referenced, now)]
        for start in range(0, len(garbage), DELETE_BATCH):
            if others := lock.others():
                report.skipped_reason = (f"stopped after {report.removed} of {len(garbage)}: "
                                         f"{others[0].describe()} appeared")
                return report
            for item in garbage[start : start + DELETE_BATCH]:
                log.info("%s: %s blob %s", location.name, "would remove" if dry_run else "removing", item.key)
                if not dry_run:
                    location.delete(item.key)
                report.removed += 1
                report.removed_bytes += item.size
    return report


def _is_garbage(item: StoredObject, referenced: set[str], now: datetime) -> bool:
    name = item.key.rsplit("/", 1)[-1]
    if item.key.startswith(LEGACY_INCOMING_PREFIX) or name.startswith(STAGING_PREFIX):
        return item.last_modified < now - STAGING_MAX_AGE
    return item.key not in referenced and item.last_modified < now - BLOB_GRACE
