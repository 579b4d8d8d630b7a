"""The storage snapshot format: ``storage/<backup_id>/objects.jsonl.gz`` names every object (bucket,
path, sha256, size, content type, cache control, source etag, updated time) and ``blobs.jsonl.gz`` holds
the same rows without names, keyed by a fingerprint of the object's state at the source: what
retention, health checks and the next snapshot read, never needing a key. The manifest also records
the bucket definitions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import TYPE_CHECKING

from pyrage.x25519 import Identity

from bhv360_backup.locations.base import Location
from bhv360_backup.repository.layout import blob_key
from bhv360_backup.repository.manifest import Manifest
from bhv360_backup.repository.verify import read_json_lines_artifact, read_lines_artifact
from bhv360_backup.streams import json_line

if TYPE_CHECKING:
    from bhv360_backup.sources.storage import ObjectInfo

INDEX_ARTIFACT = "objects.jsonl.gz"
BLOBS_ARTIFACT = "blobs.jsonl.gz"
INDEX_GZIP_LEVEL = 1  # rows mostly of hashes: level 6 makes them 9% smaller in 2.7 times the time

def source_fingerprint(bucket: str, path: str, etag: str, size: int, updated_at: str) -> str:
    """Identifies an object's state at the source without naming it: the key of reuse between snapshots."""
    return hashlib.sha256(json.dumps([bucket, path, etag, size, updated_at]).encode()).hexdigest()


_NAMES = ("bucket", "path", "etag", "updated_at", "object_id")
_OMITTED_WHEN_EMPTY = ("locked_until", "stored_sha256", "object_id")  # fields added in 0.3: older indexes stay as they were


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
    object_id: str | None = None  # the source's id of the object (Supabase: storage.objects.id)

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
        return self.rows()[1]

    def rows(self) -> tuple[dict, dict]:
        """:meth:`row` and :meth:`blob_row` together, the row built once."""
        row = self.row()
        return row, {"source": self.source, **{name: value for name, value in row.items() if name not in _NAMES}}

    @classmethod
    def from_row(cls, row: dict) -> IndexEntry:
        """The entry in a row that may carry more (an incremental segment's object event)."""
        return cls(**{name: row[name] for name in _FIELDS if name in row})

    @classmethod
    def reuse(cls, obj: ObjectInfo, row: dict) -> IndexEntry:
        """The entry of an unchanged object, from the blob row its fingerprint found."""
        fields = {key: value for key, value in row.items() if key != "source"}
        return cls(bucket=obj.bucket, path=obj.path, etag=obj.etag, updated_at=obj.updated_at, object_id=obj.id,
                   **fields)


_FIELDS = tuple(f.name for f in fields(IndexEntry))
_BLOB_ROW_KEYS = frozenset(_FIELDS) - frozenset(_NAMES) | {"source"}
_ROW_DEFAULTS = {f.name: f.default for f in fields(IndexEntry)
                 if f.default is not MISSING and f.name not in _OMITTED_WHEN_EMPTY}


def reused_row(obj: ObjectInfo, blob_row: dict) -> dict:
    """``IndexEntry.reuse(obj, blob_row).row()`` without the entry: a no-change snapshot makes one per
    object. A row of any other shape is left to the entry (which refuses it as before)."""
    if not blob_row.keys() <= _BLOB_ROW_KEYS:
        return IndexEntry.reuse(obj, blob_row).row()
    row = {**_ROW_DEFAULTS, **blob_row, "bucket": obj.bucket, "path": obj.path, "etag": obj.etag,
           "updated_at": obj.updated_at}
    row.pop("source", None)
    if obj.id is not None:
        row["object_id"] = obj.id
    return row


def read_index(location: Location, manifest: Manifest, identities: Sequence[Identity] = ()) -> Iterator[IndexEntry]:
    """The entries of a stored snapshot, after checking the index (decrypted with ``identities``)."""
    for row in read_json_lines_artifact(location, manifest, INDEX_ARTIFACT, identities):
        yield IndexEntry(**row)


def stored_size(row: dict) -> int:
    """The bytes a blob row's blob takes in a location (its plain size unless encrypted)."""
    return row["size"] if row.get("stored_size") is None else row["stored_size"]


def read_blob_rows(location: Location, manifest: Manifest) -> Iterator[dict]:
    """The name-free rows of a stored snapshot: readable without a key."""
    return map(json.loads, read_blob_lines(location, manifest))


def read_blob_lines(location: Location, manifest: Manifest) -> Iterator[str]:
    """The name-free rows of a stored snapshot, as the JSON lines it stores them in."""
    if BLOBS_ARTIFACT not in {artifact.path for artifact in manifest.artifacts}:
        if INDEX_ARTIFACT not in {artifact.path for artifact in manifest.artifacts}:
            return iter(())  # an incremental segment that stored no object
        # a snapshot made before blobs.jsonl.gz existed: its index is plain and holds the same rows
        return (json_line(entry.blob_row()) for entry in read_index(location, manifest))
    return read_lines_artifact(location, manifest, BLOBS_ARTIFACT)
