"""The blob store, after restic's repository: every stored object's bytes once per location, named by
the sha256 of its content, ``blobs/sha256/<2 hex>/<sha256>`` (so ``sha256sum`` alone verifies a blob and
unchanged objects cost nothing in a new snapshot), written once and never modified; only garbage
collection (after retention) removes a blob, under an exclusive lock.

Encrypted blobs live in a blob space of their recipients, ``blobs/age-<hash of the recipients>/``:
plain blobs are never reused by an encrypted snapshot, and after a key rotation the next snapshot
encrypts every object to the new key, while older snapshots keep their blobs until they expire.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bhv360_backup.errors import BackupError, IntegrityError, first_line
from bhv360_backup.locations.base import (
    STAGING_PREFIX,
    ArtifactMissing,
    ArtifactWriter,
    Location,
    StoredObject,
)
from bhv360_backup.repository.catalog import list_backups, read_manifest
from bhv360_backup.repository.layout import (
    BLOB_PREFIX,
    BLOBS_ROOT,
    PLAIN_SPACE,
    BackupType,
    blob_key,
    blob_space,
)
from bhv360_backup.repository.locks import exclusive_lock
from bhv360_backup.repository.manifest import Manifest, iso, parse_iso, utc_now
from bhv360_backup.repository.scratch import ScratchIndex
from bhv360_backup.repository.snapshots import IndexEntry, read_blob_rows, stored_size
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.streams import Digest, copy_stream

log = logging.getLogger(__name__)

LEGACY_INCOMING_PREFIX = f"{BLOBS_ROOT}incoming/"  # staging of releases before 0.3
STAGING_MAX_AGE = timedelta(hours=24)
BLOB_GRACE = timedelta(hours=48)

@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int
    stored_size: int
    stored_sha256: str
    locked_until: str | None = None


class BlobStore:
    """The blob space of the live locations of one run (plain, or of the writer's recipients).

    A snapshot lists each remote location's blobs once (``listed``); a run that stores a few objects (an
    incremental segment) asks each location about each blob instead of listing them all, as every run
    asks a location whose lookups are cheap (a folder: one ``lstat`` a blob, less than listing them)."""

    def __init__(self, writer: BackupWriter, scratch: ScratchIndex, *, listed: bool = True) -> None:
        self.writer = writer
        self.space = blob_space(writer.recipients)
        self.folder = f"{BLOBS_ROOT}{self.space or PLAIN_SPACE}/"
        self.scratch = scratch
        self.listed = {location.name for location in writer.live if listed and not location.cheap_size_lookups}
        self.locked = [location for location in writer.live if location.lock_until() is not None]
        for location in writer.live:
            if location.name not in self.listed:
                continue
            try:
                scratch.load_present(location.name, ((item.key.rsplit("/", 1)[-1], item.size)
                                                     for item in location.iter_objects(self.folder)))
            except Exception as error:  # noqa: BLE001 - recorded; the other locations go on
                writer.drop(location, f"cannot list blobs: {first_line(error)}")

    def reusable(self, rows: list[dict]) -> list[bool]:
        """For each earlier blob row: is its blob, of this blob space, in every live location?"""
        names = [row["sha256"] for row in rows if row.get("space") == self.space]
        present = [self._present_sizes(location, names) for location in self.writer.live]
        return [row.get("space") == self.space and all(sizes.get(row["sha256"]) == stored_size(row) for sizes in present)
                for row in rows]

    def _present_sizes(self, location: Location, names: list[str]) -> dict[str, int]:
        if location.cheap_size_lookups:
            return self._asked(location, names)
        found = self.scratch.present_sizes(location.name, names)
        if location.name not in self.listed:
            for name, size in self._asked(location, [name for name in names if name not in found]).items():
                found[name] = size
                self.scratch.mark_present(location.name, name, size)
        return found

    def _asked(self, location: Location, names: list[str]) -> dict[str, int]:
        """The stored sizes of those of ``names`` that ``location`` says it holds."""
        keys = {blob_key(name, self.space): name for name in names}
        return {keys[key]: size for key, size in location.sizes_of(keys).items()}

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
            present = self._present_sizes(location, [plain.sha256]).get(plain.sha256) == stored.size
            return None if present else blob_key(plain.sha256, self.space)

        def open_writer(location: Location) -> ArtifactWriter:
            return location.open_blob_writer(self.folder, lambda: key_of(location))

        _, written = self.writer.stream_everywhere(open_writer, sealed, "a blob", digest=stored)
        for location in written:
            if not location.cheap_size_lookups:
                self.scratch.mark_present(location.name, plain.sha256, stored.size)
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


BLOB_TYPES = (BackupType.STORAGE, BackupType.INCREMENTAL)  # the backups whose objects live in the blob store


def _stored_blobs(location: Location, manifest: Manifest) -> dict[str, int]:
    """The blob keys a snapshot references, with their stored sizes."""
    return {blob_key(row["sha256"], row.get("space")): stored_size(row) for row in read_blob_rows(location, manifest)}


def copy_snapshot_blobs(manifest: Manifest, source: Location, target: Location) -> None:
    """Copy the blobs a snapshot references that ``target`` lacks (before its index and manifest)."""
    if manifest.type not in BLOB_TYPES:
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
        for backup_type in BLOB_TYPES:
            for backup_id in list_backups(location, backup_type):
                try:
                    manifest = read_manifest(location, backup_type, backup_id)
                    referenced.update(_stored_blobs(location, manifest))
                except BackupError as error:
                    report.skipped_reason = f"{backup_type.value} backup {backup_id} unreadable: {error}"
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
