"""The storage backup: a snapshot of every bucket, each object's bytes stored once in the blob store
and named by an index of the snapshot (see ``repository.snapshots`` and ``repository.blobs``)."""

from __future__ import annotations

import gc
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

from bhv360_backup.errors import BackupError, first_line
from bhv360_backup.locations.base import Location
from bhv360_backup.pools import BoundedPool, repeated
from bhv360_backup.repository.blobs import BlobStore, StoredBlob, copy_snapshot_blobs
from bhv360_backup.repository.catalog import list_backups, read_manifest
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.locks import shared_lock
from bhv360_backup.repository.manifest import Manifest, iso, utc_now
from bhv360_backup.repository.scratch import PreviousBlob, ScratchIndex
from bhv360_backup.repository.snapshots import (
    BLOBS_ARTIFACT,
    INDEX_ARTIFACT,
    INDEX_GZIP_LEVEL,
    IndexEntry,
    read_blob_lines,
    source_fingerprint,
)
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.sources.storage import (
    BucketInfo,
    ObjectGone,
    ObjectInfo,
    StorageSource,
    TransientSourceError,
    with_retries,
)
from bhv360_backup.streams import gzip_lines

log = logging.getLogger(__name__)

DEFAULT_PARALLELISM = 8


MAX_NAMED = 100  # skipped objects and failures named in the stats and the error; the rest are counted


@dataclass
class SnapshotStats:
    seen: int = 0
    downloaded: int = 0
    reused: int = 0
    skipped: int = 0
    bytes_transferred: int = 0
    seconds: float = 0.0
    skipped_objects: list[str] = field(default_factory=list)
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def mb_per_s(self) -> float:
        return round(self.bytes_transferred / 1e6 / self.seconds, 2) if self.seconds else 0.0

    def skip(self, name: str) -> None:
        self.skipped += 1
        if len(self.skipped_objects) < MAX_NAMED:
            self.skipped_objects.append(name)

    def fail(self, problem: str) -> None:
        self.failed += 1
        if len(self.failures) < MAX_NAMED:
            self.failures.append(problem)

    def to_dict(self) -> dict:
        return {
            "seen": self.seen,
            "downloaded": self.downloaded,
            "reused": self.reused,
            "skipped": self.skipped,
            "bytes_transferred": self.bytes_transferred,
            "mb_per_s": self.mb_per_s,
            "skipped_objects": self.skipped_objects,
        }


def load_previous_blobs(locations: Sequence[Location], scratch: ScratchIndex) -> None:
    """The blob rows of the newest complete snapshot by source fingerprint, from the first location
    that has a readable one, into ``scratch``."""
    for location in locations:
        try:
            ids = list_backups(location, BackupType.STORAGE)
            if ids:
                manifest = read_manifest(location, BackupType.STORAGE, ids[-1])
                if unreadable := scratch.load_previous(read_blob_lines(location, manifest)):
                    log.warning("%d blob row(s) of storage snapshot %s in %s unreadable: their objects are copied "
                                "again", unreadable, manifest.backup_id, location.name)
                return
        except Exception as error:  # noqa: BLE001 - then every object is downloaded again
            log.warning("previous snapshot in %s unreadable (%s); downloading everything", location.name, error)
            scratch.load_previous(())


def take_snapshot(
    source: StorageSource,
    writer: BackupWriter,
    *,
    dag_id: str,
    run_id: str,
    parallelism: int = DEFAULT_PARALLELISM,
) -> tuple[Manifest, SnapshotStats]:
    """Snapshot every bucket of ``source`` into the writer's locations and publish the manifest. The
    shared lock is held from the start: a retry that reuses an earlier try's blobs copies them under it."""
    with shared_lock(writer.live, run_id, unreachable=writer.drop):
        reused_manifest = writer.resume(copy_extra=copy_snapshot_blobs)
        if reused_manifest is not None:
            log.info("storage snapshot %s was completed by an earlier try; reusing it", writer.backup_id)
            return reused_manifest, SnapshotStats()
        try:
            with ScratchIndex() as scratch, existing_objects_frozen():
                return _snapshot(scratch, source, writer, dag_id=dag_id, run_id=run_id, parallelism=parallelism)
        except BaseException:
            writer.discard()
            raise


WRITE_BACK_EVERY = 1.0  # seconds between the flushes made while blobs are stored


def written_back_as_it_goes(writer: BackupWriter) -> AbstractContextManager[None]:
    """The blobs made durable every ``WRITE_BACK_EVERY`` seconds while they are stored, by a thread of its
    own: the disk writes while the run downloads, and the flush before the index waits for the last
    second only (it had waited for the whole snapshot's bytes: 6% of a first snapshot's time)."""
    return repeated(writer.flush, WRITE_BACK_EVERY, "write-back")


@contextmanager
def existing_objects_frozen() -> Iterator[None]:
    """The objects alive when the snapshot starts (the worker's modules, the S3 clients' models: a few
    hundred thousand) left out of the garbage collector's full passes until it ends. A snapshot
    allocates objects by the million, so full passes come often, and each walked them all again (8 %
    of a no-change snapshot's time). They are collected as before once the snapshot is over. A process
    whose host froze objects itself (Airflow's executors do before they fork workers) is left as it is:
    unfreezing would release the host's objects too."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


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


LISTING_DEPTH = 10_000  # objects listed ahead of the transfers
BATCH = 500  # listed objects compared with the previous snapshot at once


@contextmanager
def listing(source: StorageSource, buckets: Sequence[BucketInfo], parallelism: int) -> Iterator[Iterator[list[ObjectInfo]]]:
    """Every bucket's objects in batches of up to BATCH (as many as are listed, never waiting for a
    batch to fill). The buckets are listed side by side from the moment the context is entered, so the
    listing runs while the caller prepares; a bounded queue holds what is listed ahead, and a listing
    that fails raises from the batches."""
    listed: queue.Queue = queue.Queue(maxsize=LISTING_DEPTH)
    stopped = threading.Event()
    done = object()

    def put(item: object) -> bool:
        while not stopped.is_set():
            try:
                listed.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def list_bucket(bucket: BucketInfo) -> None:
        try:
            for obj in source.list_objects(bucket.id):
                if not put(obj):
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            put((done, error))
            return
        put((done, None))

    def batches() -> Iterator[list[ObjectInfo]]:
        remaining = len(buckets)
        batch: list[ObjectInfo] = []
        while remaining:
            try:
                item = listed.get(block=not batch)
            except queue.Empty:
                yield batch
                batch = []
                continue
            if isinstance(item, tuple) and item[0] is done:
                if item[1] is not None:
                    raise item[1]
                remaining -= 1
                continue
            batch.append(item)
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    with ThreadPoolExecutor(max(1, min(len(buckets), parallelism)), thread_name_prefix="list") as pool:
        for bucket in buckets:
            pool.submit(list_bucket, bucket)
        try:
            yield batches()
        finally:
            stopped.set()


def compare_with_previous(
    batch: list[ObjectInfo], scratch: ScratchIndex, blobs: BlobStore
) -> tuple[list[tuple[ObjectInfo, PreviousBlob]], list[ObjectInfo]]:
    """The listed objects whose earlier blob every location still holds (with the previous snapshot's blob
    row), and the rest."""
    fingerprints = [source_fingerprint(obj.bucket, obj.path, obj.etag, obj.size, obj.updated_at) for obj in batch]
    previous = scratch.previous(fingerprints)
    earlier = [(obj, previous[fingerprint]) for obj, fingerprint in zip(batch, fingerprints, strict=True)
               if fingerprint in previous]
    verdicts = blobs.reusable([blob.row for _, blob in earlier])
    to_reuse = [pair for pair, reusable in zip(earlier, verdicts, strict=True) if reusable]
    reused = {id(obj) for obj, _ in to_reuse}
    return to_reuse, [obj for obj in batch if id(obj) not in reused]


def _snapshot(
    scratch: ScratchIndex, source: StorageSource, writer: BackupWriter, *, dag_id: str, run_id: str, parallelism: int
) -> tuple[Manifest, SnapshotStats]:
    stats = SnapshotStats()
    started = time.monotonic()
    lock = threading.Lock()

    def store(obj: ObjectInfo, earlier: dict | None = None) -> None:
        """Index one object: its earlier blob reused, or else its bytes copied."""
        try:
            entry = (copy_object(source, blobs, obj) if earlier is None
                     else blobs.keep_locked(IndexEntry.reuse(obj, earlier)))
        except ObjectGone:
            with lock:
                stats.skip(f"{obj.bucket}/{obj.path}")
            return
        except Exception as error:  # noqa: BLE001 - the task fails after the other objects finish
            with lock:
                stats.fail(f"{obj.bucket}/{obj.path}: {first_line(error)}")
            return
        scratch.add_entry(entry)
        with lock:
            if earlier is None:
                stats.downloaded += 1
                stats.bytes_transferred += entry.size
            else:
                stats.reused += 1

    listing_started = utc_now()
    buckets = source.list_buckets()
    with listing(source, buckets, parallelism) as batches:  # the source is listed while the rest is read
        load_previous_blobs(writer.live, scratch)
        blobs = BlobStore(writer, scratch)
        with written_back_as_it_goes(writer), BoundedPool(parallelism, "snapshot") as pool:
            for batch in batches:
                stats.seen += len(batch)
                to_reuse, to_download = compare_with_previous(batch, scratch, blobs)
                if blobs.locked:  # extending a lock is a request: in the pool
                    for obj, earlier in to_reuse:
                        pool.submit(store, obj, earlier.row)
                else:
                    scratch.add_unchanged(to_reuse)
                    with lock:
                        stats.reused += len(to_reuse)
                for obj in to_download:
                    pool.submit(store, obj)
            listing_completed = utc_now()
    stats.seconds = time.monotonic() - started
    if stats.failed:
        raise BackupError(f"{stats.failed} object(s) could not be copied: " + "; ".join(stats.failures[:10]))
    writer.flush()  # every blob durable before the index that names them
    writer.add(INDEX_ARTIFACT, gzip_lines(scratch.index_lines(), INDEX_GZIP_LEVEL))
    writer.add(BLOBS_ARTIFACT, gzip_lines(scratch.blob_lines(), INDEX_GZIP_LEVEL), encrypt=False)
    writer.verify()
    objects, size = scratch.totals()
    manifest = writer.publish(
        dag_id=dag_id,
        run_id=run_id,
        details={
            "source": source.describe(),
            "buckets": [bucket.to_dict() for bucket in buckets],
            "objects": objects,
            "bytes": size,
            "index": INDEX_ARTIFACT,
            "listing_started_at": iso(listing_started),
            "listing_completed_at": iso(listing_completed),
            "stats": stats.to_dict(),
        },
    )
    log.info("storage snapshot %s: %s", writer.backup_id, stats.to_dict())
    return manifest, stats
