"""The storage backup: a snapshot of every bucket, each object's bytes stored once in the blob store
and named by an index of the snapshot (see ``repository.snapshots`` and ``repository.blobs``)."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bhv360_backup.errors import BackupError, first_line
from bhv360_backup.locations.base import Location
from bhv360_backup.repository.blobs import BlobStore, StoredBlob, copy_snapshot_blobs
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.locks import shared_lock
from bhv360_backup.repository.manifest import Manifest, iso, utc_now
from bhv360_backup.repository.snapshots import (
    BLOBS_ARTIFACT,
    INDEX_ARTIFACT,
    IndexEntry,
    read_blob_rows,
    source_fingerprint,
)
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.sources.storage import (
    ObjectGone,
    ObjectInfo,
    StorageSource,
    TransientSourceError,
    with_retries,
)
from bhv360_backup.streams import gzip_json_lines

log = logging.getLogger(__name__)

DEFAULT_PARALLELISM = 8


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


def copy_object(source: StorageSource, blobs: BlobStore, obj: ObjectInfo) -> IndexEntry:
    """Stream one object into the blob store (retrying what is worth retrying); its index entry. Raises
    :class:`ObjectGone` when the object was deleted at the source since it was listed."""

    def attempt() -> tuple[StoredBlob, str | None, str | None, str]:
        md5 = hashlib.md5(usedforsecurity=False)
        try:
            opened = source.open_object(obj)
            blob = blobs.store(md5.update(chunk) or chunk for chunk in opened.chunks)
        except (ObjectGone, TransientSourceError, BackupError):
            raise
        except Exception as error:  # noqa: BLE001 - a dropped connection or timeout mid-stream
            raise TransientSourceError(f"{obj.bucket}/{obj.path}: {first_line(error)}") from None
        return blob, opened.content_type, opened.cache_control, md5.hexdigest()

    blob, content_type, cache_control, md5 = with_retries(attempt, f"{obj.bucket}/{obj.path}")
    return IndexEntry(obj.bucket, obj.path, blob.sha256, blob.size, obj.content_type or content_type,
                      obj.cache_control or cache_control, obj.etag, obj.updated_at, md5, blobs.space,
                      blob.stored_size if blobs.space else None, blob.locked_until,
                      blob.stored_sha256 if blobs.space else None, obj.id)


def _snapshot(
    source: StorageSource, writer: BackupWriter, *, dag_id: str, run_id: str, parallelism: int
) -> tuple[Manifest, SnapshotStats]:
    stats = SnapshotStats()
    started = time.monotonic()
    previous = previous_blobs(writer.live)
    blobs = BlobStore(writer)
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
        try:
            entry = copy_object(source, blobs, obj)
        except ObjectGone:
            with lock:
                stats.skipped += 1
                stats.skipped_objects.append(f"{obj.bucket}/{obj.path}")
            return
        except Exception as error:  # noqa: BLE001 - the task fails after the other objects finish
            with lock:
                failures.append(f"{obj.bucket}/{obj.path}: {first_line(error)}")
            return
        with lock:
            entries[(obj.bucket, obj.path)] = entry
            stats.downloaded += 1
            stats.bytes_transferred += entry.size

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


