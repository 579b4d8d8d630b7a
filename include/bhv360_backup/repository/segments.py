"""The incremental backup format: ``incremental/<backup_id>/`` is one segment of the change stream.

``changes.jsonl.gz`` holds every change committed in the segment's WAL range, whole transactions in
commit order, one JSON line per ``begin`` (xid, LSN), change (``insert``/``update``/``delete`` with the
table, the values as text with their types, the old key; ``truncate``) and ``commit`` (xid, LSN, time).
``object-events.jsonl.gz`` names the Storage objects the segment's transactions created, changed or deleted
(their bytes are blobs in the blob store) and ``blobs.jsonl.gz`` the same without names. The manifest
records the range (``start_lsn``: the slot's confirmed position before, ``end_lsn``: after), the moment
it was captured up to (``captured_until``: every commit before it is in this or an earlier segment),
the tables' key columns, every sequence's value and the schema fingerprint at ``end_lsn``.

Segments chain by LSN: from a database backup's ``chain.confirmed_flush_lsn``, each next segment starts
at or before where the previous one ended; overlaps (a capture retried after its slot could not be moved)
are harmless because a replay skips a transaction it applied already.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pyrage.x25519 import Identity

from bhv360_backup.locations.base import Location
from bhv360_backup.postgres.positions import lsn_position
from bhv360_backup.repository.manifest import Manifest, parse_iso
from bhv360_backup.repository.verify import read_json_lines_artifact

CHANGES_ARTIFACT = "changes.jsonl.gz"
OBJECTS_ARTIFACT = "object-events.jsonl.gz"
SEGMENT_BLOBS_ARTIFACT = "blobs.jsonl.gz"


@dataclass(frozen=True)
class Segment:
    backup_id: str
    start_lsn: str
    end_lsn: str
    captured_until: datetime
    fingerprint: str
    manifest: Manifest = field(repr=False, compare=False)

    @property
    def start(self) -> int:
        return lsn_position(self.start_lsn)

    @property
    def end(self) -> int:
        return lsn_position(self.end_lsn)

    @classmethod
    def of(cls, manifest: Manifest) -> Segment:
        details = manifest.details
        return cls(manifest.backup_id, details["start_lsn"], details["end_lsn"], parse_iso(details["captured_until"]),
                   details["fingerprint"], manifest)


@dataclass
class Chain:
    """The segments a replay from ``from_lsn`` reads, in order, and how far they reach."""

    segments: list[Segment]
    reaches: datetime | None  # every commit before this moment is covered
    gap: str | None = None  # why the chain stops before the moment asked for
    schema_change: str | None = None  # where a schema or access change stops an exact replay

    @property
    def ids(self) -> list[str]:
        return [segment.backup_id for segment in self.segments]


def build_chain(segments: Sequence[Segment], from_lsn: str, fingerprint: str | None,
                until: datetime | None = None) -> Chain:
    """The contiguous run of segments from ``from_lsn`` up to ``until`` (or as far as they go): at each
    step the segment that starts at or before the position reached and ends furthest past it. Stops at a
    gap, and before a segment whose schema fingerprint differs from the one the replay runs on."""
    position, chosen, reaches = lsn_position(from_lsn), [], None
    running = fingerprint
    ordered = sorted(segments, key=lambda segment: (segment.start, -segment.end))
    while until is None or reaches is None or reaches < until:
        candidates = [s for s in ordered if s.start <= position < s.end]
        if not candidates:
            if until is not None and (reaches is None or reaches < until):
                after = f" (captured until {reaches.isoformat()})" if reaches else ""
                return Chain(chosen, reaches, f"no intact segment continues the chain from LSN "
                             f"{_text(position)}{after}")
            break
        segment = max(candidates, key=lambda candidate: candidate.end)
        if running is not None and segment.fingerprint != running:
            since = f" since {reaches.isoformat()}" if reaches else ""
            return Chain(chosen, reaches, None, f"the schema or the access model changed{since}, within segment "
                         f"{segment.backup_id} (captured until {segment.captured_until.isoformat()}): "
                         f"{', '.join(segment.manifest.details.get('schema_changed', {}).get('tables', [])[:5]) or 'see its manifest'}")
        chosen.append(segment)
        position, reaches = segment.end, segment.captured_until
        running = segment.fingerprint
    return Chain(chosen, reaches)


def _text(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def read_changes(location: Location, manifest: Manifest, identities: Sequence[Identity] = ()) -> Iterator[dict[str, Any]]:
    """A segment's changes in commit order, streamed."""
    return read_json_lines_artifact(location, manifest, CHANGES_ARTIFACT, identities)


def read_object_events(location: Location, manifest: Manifest, identities: Sequence[Identity] = ()) -> Iterator[dict]:
    """The Storage objects a segment's transactions put or deleted, with commit times."""
    if OBJECTS_ARTIFACT not in {artifact.path for artifact in manifest.artifacts}:
        return iter(())
    return read_json_lines_artifact(location, manifest, OBJECTS_ARTIFACT, identities)
