"""The location interface: bytes stored under keys (``/``-separated relative paths), in a folder or an S3
bucket. A location knows nothing of backups: ``repository`` lays them out in it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bhv360_backup.errors import BackupError

CHUNK_SIZE = 1 << 20
STAGING_PREFIX = ".partial-"  # names of a folder's unfinished writes; garbage once a day old


class ArtifactMissing(BackupError):
    """The artifact is not in the location."""


class BackupLocked(BackupError):
    """The location keeps an object until a date (S3 Object Lock); deleting it must wait."""


class ArtifactWriter(ABC):
    """Receives a stream; nothing is visible under the final name until :meth:`commit`."""

    @abstractmethod
    def write(self, chunk: bytes) -> None: ...

    @abstractmethod
    def commit(self) -> None:
        """Make the written bytes visible under the final name."""

    @abstractmethod
    def abort(self) -> None:
        """Discard everything written; safe to call more than once."""

    def receipt(self) -> str | None:
        """After :meth:`commit`: what the backend reported for the stored bytes, with which
        :meth:`Location.confirms` checks the copy later without reading it back; None where reading
        it back is the check."""
        return None


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    last_modified: datetime


class Location(ABC):
    """A place that stores bytes under keys: ``name`` is ``local`` or ``s3``."""

    name: str
    # size_of answers without a request (a file system on this host): asking it about each of many keys
    # costs less than listing every object under their folder
    cheap_size_lookups = False

    @abstractmethod
    def describe(self) -> str:
        """Where this is, for people: a folder path or an ``s3://`` URL."""

    @abstractmethod
    def open_writer(self, key: str, *, durable: bool = True) -> ArtifactWriter:
        """A writer for ``key``. With ``durable`` false the caller promises a :meth:`flush` before
        anything refers to the object (many small blobs, then one flush before the manifest)."""

    @abstractmethod
    def open_blob_writer(self, folder: str, key_of: Callable[[], str | None]) -> ArtifactWriter:
        """A writer for an object named by its content: ``key_of()`` is called once the stream has
        ended and names the final key (under ``folder``), or None when the object is already stored.
        Nothing appears under the final key until it is whole; an object already there is kept."""

    @abstractmethod
    def flush(self) -> None:
        """Make everything written so far durable."""

    @abstractmethod
    def read_chunks(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Stream a stored object; raises :class:`ArtifactMissing` if it is not there."""

    @abstractmethod
    def size_of(self, key: str) -> int | None:
        """The stored size, or None if the object is not there."""

    def sizes_of(self, keys: Iterable[str]) -> dict[str, int]:
        """The stored sizes of those of ``keys`` that are there."""
        return {key: size for key in keys if (size := self.size_of(key)) is not None}

    def confirms(self, key: str, size: int, receipt: str) -> bool:
        """Whether the backend still vouches for the object its writer's ``receipt`` describes (same
        size and checksum), without reading it; False where it cannot, and the copy is read back."""
        return False

    @abstractmethod
    def iter_objects(self, prefix: str) -> Iterator[StoredObject]:
        """Every stored object whose key starts with ``prefix`` (a folder, ending in ``/``)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object; no error if it is already gone."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under ``prefix`` (a folder, ending in ``/``); no error if there is none."""

    def locked_until(self, key: str) -> datetime | None:
        """The Object Lock retain-until date of ``key`` while it is in the future; None where nothing is locked."""
        return None

    def lock_until(self) -> datetime | None:
        """The Object Lock retain-until date a write made now gets; None where nothing is locked."""
        return None

    def extend_lock(self, key: str, until: datetime) -> None:
        """Keep ``key`` locked until at least ``until`` (a blob a new backup reuses); only where
        :meth:`lock_until` is not None."""
        raise BackupError(f"{self.describe()} keeps no Object Lock")

    def local_path(self, key: str) -> Path | None:
        """The file holding ``key`` when the location is a folder on this host (a restore reads it in
        place instead of staging a copy); None elsewhere."""
        return None

    def abort_unfinished(self, before: datetime) -> int:
        """Discard uploads started before ``before`` that never completed and that no listing shows
        (S3's multipart uploads); returns how many. A folder has none: its staging files are listed."""
        return 0

    def put_bytes(self, key: str, data: bytes) -> None:
        writer = self.open_writer(key)
        try:
            writer.write(data)
            writer.commit()
        except BaseException:
            writer.abort()
            raise

    def read_bytes(self, key: str) -> bytes:
        return b"".join(self.read_chunks(key))
