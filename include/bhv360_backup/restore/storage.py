"""Restore a storage snapshot: into a folder as a plain file tree, or back into a Supabase project.

Objects go in parallel with bounded memory; each blob streams from the preferred location with
its sha256 checked, and comes from the other location when that copy is missing or damaged.
Objects already identical at the target are skipped. Names that could leave their folder are
refused, never written.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyrage.x25519 import Identity

from bhv360_backup.errors import BackupError, IntegrityError, first_line
from bhv360_backup.locations.base import Location
from bhv360_backup.locations.local import LocalWriter
from bhv360_backup.paths import check_relative_path
from bhv360_backup.pools import BoundedPool
from bhv360_backup.repository.encryption import decrypt
from bhv360_backup.repository.manifest import Manifest
from bhv360_backup.repository.snapshots import IndexEntry, read_index
from bhv360_backup.repository.verify import require_identities
from bhv360_backup.streams import Digest

log = logging.getLogger(__name__)


def checked_blob(
    locations: Sequence[Location], entry: IndexEntry, identities: Sequence[Identity] = ()
) -> Iterator[bytes]:
    """Stream one object's plain bytes from the first location that has its blob, decrypting an
    encrypted one with ``identities``; raise at the end if its sha256 differs."""
    for location in locations:
        if location.size_of(entry.blob_key) != entry.stored_bytes:
            continue
        where = f"{location.name}:{entry.blob_key}"
        chunks = location.read_chunks(entry.blob_key)
        if entry.encrypted:
            chunks = decrypt(chunks, require_identities(identities, where), where)
        digest = Digest()
        for chunk in chunks:
            digest.update(chunk)
            yield chunk
        if digest.sha256 != entry.sha256 or digest.size != entry.size:
            raise IntegrityError(f"{location.name}: blob {entry.sha256} of {entry.bucket}/{entry.path} is damaged")
        return
    raise IntegrityError(f"blob {entry.sha256} of {entry.bucket}/{entry.path} is missing in every location")


class StorageSink(ABC):
    @abstractmethod
    def describe(self) -> str: ...

    @abstractmethod
    def prepare(self, buckets: list[dict[str, Any]]) -> None:
        """Create the buckets the snapshot defines that the target lacks."""

    @abstractmethod
    def is_identical(self, entry: IndexEntry) -> bool: ...

    @abstractmethod
    def write(self, entry: IndexEntry, chunks: Iterator[bytes]) -> None: ...

    @abstractmethod
    def check(self, entries: Iterable[IndexEntry]) -> list[str]:
        """After the restore: every object is at the target with its size (and content, where readable)."""

    def present(self) -> set[tuple[str, str]]:
        """``(bucket, path)`` of the objects the target held before the restore, in the prepared buckets (a
        folder target is new or empty: none)."""
        return set()


NAME_MAX = 255


def safe_object_path(entry: IndexEntry) -> str:
    """``bucket/path`` as a relative file path, or an error saying why the name is refused."""
    if not entry.bucket or "/" in entry.bucket or entry.bucket in (".", ".."):
        raise BackupError(f"bucket name {entry.bucket!r} is not a safe folder name")
    if any(ord(c) < 32 or ord(c) == 127 for c in entry.path) or len(entry.path.encode()) > 1024:
        raise BackupError(f"object name {entry.path!r} has control characters or is too long")
    if any(len(part.encode()) > NAME_MAX for part in entry.path.split("/")):
        raise BackupError(f"object name {entry.path[:60]!r}... has a part longer than {NAME_MAX} bytes, too long "
                          "for a file name (restore it into Supabase instead)")
    return check_relative_path(f"{entry.bucket}/{entry.path}")


RESTORE_ROOT_VARIABLE = "bhv360_restore_folder_root"


def folder_target(requested: str, root: Path | None, protected: Iterable[Path]) -> Path:
    """The folder a ``folder:<path>`` restore may write: inside ``root`` (the operator's restore root),
    resolved without following a link out of it, new or empty, and never one of the ``protected``
    folders (DAGs, plugins, Airflow's home and logs, the backups) nor inside or around one. A request
    may name it, so anything else would let whoever can trigger a restore place files (code) anywhere."""
    if root is None:
        raise BackupError(f"storage_target 'folder:{requested}' is refused: folder targets need the variable "
                          f"{RESTORE_ROOT_VARIABLE} (a folder reserved for restores); use 'folder' for the run's own "
                          "restore folder")
    root = root.resolve()
    folder = Path(requested)
    resolved = folder.resolve()
    if not folder.is_absolute() or not resolved.is_relative_to(root) or resolved == root:
        raise BackupError(f"storage_target folder {requested} is outside the restore root {root} "
                          f"({RESTORE_ROOT_VARIABLE}): name a folder inside it")
    for other in protected:
        other = other.resolve()
        if resolved.is_relative_to(other) or other.is_relative_to(resolved):
            raise BackupError(f"storage_target folder {requested} is or holds {other}, which a restore never writes")
    if resolved.exists() and any(resolved.iterdir()):
        raise BackupError(f"storage_target folder {requested} is not empty; restore into a new or empty folder")
    return resolved


class FolderSink(StorageSink):
    """A plain file tree ``<root>/<bucket>/<path>``, written through staging files."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return f"folder {self.root}"

    def _path(self, entry: IndexEntry) -> Path:
        path = self.root / safe_object_path(entry)
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise BackupError(f"{entry.bucket}/{entry.path} leads outside {self.root}")
        return path

    def prepare(self, buckets: list[dict[str, Any]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def is_identical(self, entry: IndexEntry) -> bool:
        path = self._path(entry)
        if not path.is_file() or path.stat().st_size != entry.size:
            return False
        return hashlib.file_digest(path.open("rb"), "sha256").hexdigest() == entry.sha256

    def write(self, entry: IndexEntry, chunks: Iterator[bytes]) -> None:
        writer = LocalWriter(self._path(entry))
        try:
            for chunk in chunks:
                writer.write(chunk)
            writer.commit()
        except BaseException:
            writer.abort()
            raise

    def check(self, entries: Iterable[IndexEntry]) -> list[str]:
        return [f"{e.bucket}/{e.path} differs at the target" for e in entries if not self.is_identical(e)]


class SupabaseSink(StorageSink):
    """A Supabase project: buckets created with their definitions, objects uploaded with upsert.
    ``listing`` reads what the project already has (its ``list_buckets`` and ``list_objects``: the wiring
    hands in the Storage API source, so a restore never reaches into the sources)."""

    def __init__(self, url: str, service_key: str, listing: Any, timeout: float = 300) -> None:
        import httpx

        self.url = url.rstrip("/")
        self._source = listing
        self._http = httpx.Client(
            base_url=f"{self.url}/storage/v1",
            headers={"Authorization": f"Bearer {service_key}", "apikey": service_key},
            timeout=timeout,
        )
        self._existing: dict[tuple[str, str], tuple[int, str]] = {}
        self._listed: set[str] = set()

    def describe(self) -> str:
        return f"Supabase Storage at {self.url}"

    def prepare(self, buckets: list[dict[str, Any]]) -> None:
        """Create missing buckets and learn the objects the target has; a bucket listed once (by the
        storage step of a full restore) is not listed again (by its config step)."""
        buckets = [bucket for bucket in buckets if bucket["id"] not in self._listed]
        if not buckets:
            return
        present = {bucket.id: bucket.to_dict() for bucket in self._source.list_buckets()}
        for bucket in buckets:
            definition = {"public": bucket.get("public", False), "file_size_limit": bucket.get("file_size_limit"),
                          "allowed_mime_types": bucket.get("allowed_mime_types")}
            if bucket["id"] not in present:
                response = self._http.post("/bucket", json={"id": bucket["id"], "name": bucket["id"], **definition})
                if response.status_code >= 400:
                    raise BackupError(f"cannot create bucket {bucket['id']}: HTTP {response.status_code} {response.text[:200]}")
                log.info("created bucket %s", bucket["id"])
            elif {name: present[bucket["id"]].get(name) for name in definition} != definition:
                # a bucket made private since must not come back public: its definition is the backup's
                response = self._http.put(f"/bucket/{urllib.parse.quote(bucket['id'], safe='')}", json=definition)
                if response.status_code >= 400:
                    raise BackupError(f"cannot set bucket {bucket['id']}'s definition: HTTP {response.status_code} "
                                      f"{response.text[:200]}")
                log.info("set bucket %s to its recorded definition", bucket["id"])
            for obj in self._source.list_objects(bucket["id"]):
                self._existing[(obj.bucket, obj.path)] = (obj.size, obj.etag)
            self._listed.add(bucket["id"])

    def is_identical(self, entry: IndexEntry) -> bool:
        return entry.md5 is not None and self._existing.get((entry.bucket, entry.path)) == (entry.size, entry.md5)

    def present(self) -> set[tuple[str, str]]:
        return set(self._existing)

    def write(self, entry: IndexEntry, chunks: Iterator[bytes]) -> None:
        safe_object_path(entry)
        path = urllib.parse.quote(f"{entry.bucket}/{entry.path}", safe="/")
        headers = {"content-type": entry.content_type or "application/octet-stream", "x-upsert": "true",
                   "content-length": str(entry.size)}
        if entry.cache_control:
            headers["cache-control"] = entry.cache_control
        response = self._http.post(f"/object/{path}", content=chunks, headers=headers)
        if response.status_code >= 400:
            raise BackupError(f"upload refused: HTTP {response.status_code} {response.text[:200]}")

    def check(self, entries: Iterable[IndexEntry]) -> list[str]:
        """Each bucket's objects as the target lists them now, compared as the entries come (in index
        order a bucket's entries come together: one bucket's listing is held at a time)."""
        found: dict[str, tuple[int, str]] = {}
        listed_bucket = None
        problems = []
        for e in entries:
            if e.bucket != listed_bucket:
                found = {o.path: (o.size, o.etag) for o in self._source.list_objects(e.bucket)}
                listed_bucket = e.bucket
            size, etag = found.get(e.path, (None, None))
            if size != e.size or (e.md5 and etag != e.md5):
                problems.append(f"{e.bucket}/{e.path} is {'missing' if size is None else 'different'} at the target")
        return problems


@dataclass
class StorageRestoreResult:
    restored: int = 0
    identical: int = 0
    bytes: int = 0
    refused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    check_problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"restored": self.restored, "identical": self.identical, "bytes": self.bytes,
                "refused": self.refused[:50], "failed": self.failed[:50], "check_problems": self.check_problems[:50]}


def restore_snapshot(
    manifest: Manifest,
    locations: Sequence[Location],
    sink: StorageSink,
    *,
    parallelism: int = 8,
    only: set[tuple[str, str]] | None = None,
    identities: Sequence[Identity] = (),
    entries: Sequence[IndexEntry] | None = None,
    buckets: Sequence[dict[str, Any]] | None = None,
) -> StorageRestoreResult:
    """Restore every object of the snapshot (or ``entries``, the snapshot moved on to a point in time, with
    its ``buckets``; or those in ``only``) into ``sink`` and check the result; encrypted objects are
    decrypted with ``identities``.
    The index streams through twice (restore, then check), never held whole."""

    def selected() -> Iterator[IndexEntry]:
        index = read_index(locations[0], manifest, identities) if entries is None else entries
        return (entry for entry in index if only is None or (entry.bucket, entry.path) in only)

    sink.prepare(list(buckets) if buckets is not None else manifest.details.get("buckets", []))
    if only is None and (extra := sink.present()):
        for entry in selected():
            extra.discard((entry.bucket, entry.path))
        if extra:  # left there, the buckets would not be what they held: refused before any object is written
            named = ", ".join(f"{bucket}/{path}" for bucket, path in sorted(extra)[:10])
            raise BackupError(f"{sink.describe()} holds {len(extra)} object(s) the backup does not (e.g. {named}): "
                              "a restore would leave them and the buckets would differ from the backup. Restore into "
                              "an empty project or bucket, or delete them first")
    result = StorageRestoreResult()
    refused: set[tuple[str, str]] = set()
    lock = threading.Lock()

    def restore_one(entry: IndexEntry) -> None:
        name = f"{entry.bucket}/{entry.path}"
        try:
            safe_object_path(entry)
            if sink.is_identical(entry):
                with lock:
                    result.identical += 1
                return
        except BackupError as error:
            with lock:
                refused.add((entry.bucket, entry.path))
                result.refused.append(f"{name!r}: {error}")
            return
        except Exception as error:  # noqa: BLE001 - reported with the others; the restore fails
            with lock:
                result.failed.append(f"{name}: {first_line(error)}")
            return
        errors = []
        for order in (locations, list(reversed(locations))):
            try:
                sink.write(entry, checked_blob(order, entry, identities))
                with lock:
                    result.restored += 1
                    result.bytes += entry.size
                return
            except Exception as error:  # noqa: BLE001 - try the other location's copy, then report
                errors.append(first_line(error))
        with lock:
            result.failed.append(f"{name}: {'; '.join(errors)}")

    with BoundedPool(parallelism, "restore") as pool:
        for entry in selected():
            pool.submit(restore_one, entry)
    if not result.failed:
        result.check_problems = sink.check(entry for entry in selected() if (entry.bucket, entry.path) not in refused)
    return result
