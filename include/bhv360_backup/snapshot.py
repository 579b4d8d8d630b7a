"""Storage snapshots: content-addressed blobs shared between snapshots, and a per-snapshot index.

Each object's bytes are stored once per location as ``blobs/sha256/<2 hex>/<sha256>``, so
``sha256sum`` alone verifies a blob and unchanged objects cost nothing in a new snapshot. A
snapshot is ``storage/<backup_id>/`` holding ``objects.jsonl.gz`` (one JSON line per object:
bucket, path, sha256, size, content type, cache control, source etag, updated time) and the
manifest, which also records the bucket definitions. Blobs are written to ``blobs/incoming/``
first and moved to their final name once their sha256 is known; only garbage collection
(after retention) removes blobs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from bhv360_backup.backup import BackupWriter
from bhv360_backup.errors import BackupError, IntegrityError, first_line
from bhv360_backup.layout import BackupType
from bhv360_backup.locations.base import ArtifactMissing, Location
from bhv360_backup.manifest import Manifest, iso, parse_iso, utc_now
from bhv360_backup.sources.storage import (
    ObjectGone,
    ObjectInfo,
    StorageSource,
    TransientSourceError,
    with_retries,
)
from bhv360_backup.streams import copy_stream, gzip_json_lines
from bhv360_backup.verify import read_json_lines_artifact

log = logging.getLogger(__name__)

INDEX_ARTIFACT = "objects.jsonl.gz"
BLOB_PREFIX = "blobs/sha256/"
INCOMING_PREFIX = "blobs/incoming/"
LEASE_KEY = "locks/storage-snapshot.json"
LEASE_TIME = timedelta(hours=24)
BLOB_GRACE = timedelta(hours=48)
DEFAULT_PARALLELISM = 8


def blob_key(sha256: str) -> str:
    return f"{BLOB_PREFIX}{sha256[:2]}/{sha256}"


@dataclass(frozen=True)
class IndexEntry:
    bucket: str
    path: str
    sha256: str
    size: int
    content_type: str | None
    cache_control: str | None
    etag: str
    updated_at: str
    md5: str | None = None

    def matches(self, obj: ObjectInfo) -> bool:
        """Unchanged at the source: same etag, size and updated time."""
        return (self.etag, self.size, self.updated_at) == (obj.etag, obj.size, obj.updated_at)


def read_index(location: Location, manifest: Manifest) -> Iterator[IndexEntry]:
    """The entries of a stored snapshot, after checking the index's size and sha256."""
    for row in read_json_lines_artifact(location, manifest, INDEX_ARTIFACT):
        yield IndexEntry(**row)


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


class _BlobStore:
    """The blob area of the live locations of one snapshot run."""

    def __init__(self, writer: BackupWriter) -> None:
        self.writer = writer
        self.known: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()
        for location in writer.live:
            try:
                self.known[location.name] = {
                    item.key.rsplit("/", 1)[-1]: item.size for item in location.iter_objects(BLOB_PREFIX)
                }
            except Exception as error:  # noqa: BLE001 - recorded; the other locations go on
                writer.drop(location, f"cannot list blobs: {first_line(error)}")

    def has(self, sha256: str, size: int) -> bool:
        return all(self.known.get(location.name, {}).get(sha256) == size for location in self.writer.live)

    def store(self, chunks: Iterator[bytes]) -> tuple[str, int]:
        """Stream an object into every live location's blob area; return its sha256 and size."""
        incoming = f"{INCOMING_PREFIX}{uuid.uuid4().hex}"
        result, written = self.writer.write_everywhere(incoming, chunks, "a blob", durable=False)
        for location in written:
            try:
                if self.known[location.name].get(result.sha256) == result.size:
                    location.delete(incoming)
                else:
                    location.move(incoming, blob_key(result.sha256))
                    with self._lock:
                        self.known[location.name][result.sha256] = result.size
            except Exception as error:  # noqa: BLE001 - recorded; the other locations go on
                self.writer.drop(location, f"storing blob {result.sha256}: {first_line(error)}")
        return result.sha256, result.size


def _lease(locations: Sequence[Location], run_id: str) -> None:
    body = json.dumps({"run_id": run_id, "expires_at": iso(utc_now() + LEASE_TIME)}).encode()
    for location in locations:
        location.put_bytes(LEASE_KEY, body)


def _release(locations: Sequence[Location]) -> None:
    for location in locations:
        try:
            location.delete(LEASE_KEY)
        except Exception as error:  # noqa: BLE001 - the lease expires by itself
            log.warning("could not release the snapshot lease in %s: %s", location.name, error)


def active_lease(location: Location, now: datetime) -> str | None:
    """The run holding the snapshot lease in this location, if the lease has not expired."""
    try:
        lease = json.loads(location.read_bytes(LEASE_KEY))
    except ArtifactMissing:
        return None
    return lease["run_id"] if parse_iso(lease["expires_at"]) > now else None


def previous_index(locations: Sequence[Location]) -> dict[tuple[str, str], IndexEntry]:
    """The index of the newest complete snapshot, from the first location that has a readable one."""
    for location in locations:
        try:
            ids = location.list_backups(BackupType.STORAGE)
            if ids:
                manifest = location.read_manifest(BackupType.STORAGE, ids[-1])
                return {(entry.bucket, entry.path): entry for entry in read_index(location, manifest)}
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
    locations = list(writer.live)
    _lease(locations, run_id)
    try:
        return _snapshot(source, writer, dag_id=dag_id, run_id=run_id, parallelism=parallelism)
    except BaseException:
        writer.discard()
        raise
    finally:
        _release(locations)


def _snapshot(
    source: StorageSource, writer: BackupWriter, *, dag_id: str, run_id: str, parallelism: int
) -> tuple[Manifest, SnapshotStats]:
    stats = SnapshotStats()
    started = time.monotonic()
    previous = previous_index(writer.live)
    blobs = _BlobStore(writer)
    listing_started = utc_now()
    buckets = source.list_buckets()
    objects = [obj for bucket in buckets for obj in source.list_objects(bucket.id)]
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
                sha256, size = blobs.store(md5.update(chunk) or chunk for chunk in opened.chunks)
            except (ObjectGone, TransientSourceError, BackupError):
                raise
            except Exception as error:  # noqa: BLE001 - a dropped connection or timeout mid-stream
                raise TransientSourceError(f"{obj.bucket}/{obj.path}: {first_line(error)}") from None
            return sha256, size, opened.content_type, opened.cache_control, md5.hexdigest()

        try:
            sha256, size, content_type, cache_control, md5 = with_retries(attempt, f"{obj.bucket}/{obj.path}")
        except ObjectGone:
            with lock:
                stats.skipped += 1
                stats.skipped_objects.append(f"{obj.bucket}/{obj.path}")
            return
        except Exception as error:  # noqa: BLE001 - the task fails after the other objects finish
            with lock:
                failures.append(f"{obj.bucket}/{obj.path}: {first_line(error)}")
            return
        entry = IndexEntry(obj.bucket, obj.path, sha256, size, obj.content_type or content_type,
                           obj.cache_control or cache_control, obj.etag, obj.updated_at, md5)
        with lock:
            entries[(obj.bucket, obj.path)] = entry
            stats.downloaded += 1
            stats.bytes_transferred += size

    to_download = []
    for obj in objects:
        earlier = previous.get((obj.bucket, obj.path))
        if earlier and earlier.matches(obj) and blobs.has(earlier.sha256, earlier.size):
            entries[(obj.bucket, obj.path)] = earlier
            stats.reused += 1
        else:
            to_download.append(obj)
    with ThreadPoolExecutor(max(1, parallelism), thread_name_prefix="snapshot") as pool:
        for _ in pool.map(transfer, to_download):
            pass
    stats.seconds = time.monotonic() - started
    if failures:
        raise BackupError(f"{len(failures)} object(s) could not be copied: " + "; ".join(failures[:10]))
    ordered = [entries[key] for key in sorted(entries)]
    for location in writer.live:
        location.flush()  # every blob durable before the index that names them
    writer.add(INDEX_ARTIFACT, gzip_json_lines(asdict(entry) for entry in ordered))
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


def copy_snapshot_blobs(manifest: Manifest, source: Location, target: Location) -> None:
    """Copy the blobs a snapshot references that ``target`` lacks (before its index and manifest)."""
    if manifest.type != BackupType.STORAGE:
        return
    present = {item.key.rsplit("/", 1)[-1]: item.size for item in target.iter_objects(BLOB_PREFIX)}
    for entry in read_index(source, manifest):
        if present.get(entry.sha256) == entry.size:
            continue
        key = blob_key(entry.sha256)
        result = copy_stream(source.read_chunks(key), {target.name: target.open_writer(key)})
        if result.failed or result.sha256 != entry.sha256:
            raise IntegrityError(f"copying blob {entry.sha256} to {target.name} failed or did not match")
        present[entry.sha256] = entry.size


def verify_snapshot_blobs(location: Location, manifest: Manifest) -> list[str]:
    """Every blob the snapshot references exists in ``location`` with its size."""
    present = {item.key.rsplit("/", 1)[-1]: item.size for item in location.iter_objects(BLOB_PREFIX)}
    problems = []
    for entry in read_index(location, manifest):
        size = present.get(entry.sha256)
        if size != entry.size:
            state = "missing" if size is None else f"{size} bytes, index says {entry.size}"
            problems.append(f"{location.name}: blob of {entry.bucket}/{entry.path} ({entry.sha256[:12]}) {state}")
    return problems


@dataclass
class GcReport:
    location: str
    removed: int = 0
    removed_bytes: int = 0
    skipped_reason: str | None = None


def collect_garbage(location: Location, now: datetime, *, dry_run: bool) -> GcReport:
    """Remove blobs no complete snapshot references, older than the grace period, and stale incoming.

    Does nothing while a snapshot holds the lease, and nothing if any snapshot's index cannot be
    read (its references would be unknown).
    """
    report = GcReport(location.name)
    holder = active_lease(location, now)
    if holder:
        report.skipped_reason = f"a snapshot is being written ({holder})"
        return report
    referenced: set[str] = set()
    for backup_id in location.list_backups(BackupType.STORAGE):
        try:
            manifest = location.read_manifest(BackupType.STORAGE, backup_id)
            referenced.update(entry.sha256 for entry in read_index(location, manifest))
        except BackupError as error:
            report.skipped_reason = f"snapshot {backup_id} unreadable: {error}"
            return report
    for item in list(location.iter_objects("blobs/")):
        stale_incoming = item.key.startswith(INCOMING_PREFIX) and item.last_modified < now - LEASE_TIME
        unreferenced = (
            item.key.startswith(BLOB_PREFIX)
            and item.key.rsplit("/", 1)[-1] not in referenced
            and item.last_modified < now - BLOB_GRACE
        )
        if stale_incoming or unreferenced:
            log.info("%s: %s blob %s", location.name, "would remove" if dry_run else "removing", item.key)
            if not dry_run:
                location.delete(item.key)
            report.removed += 1
            report.removed_bytes += item.size
    return report
