"""The incremental backup: one segment of committed database changes (and the Storage objects they
created or changed) since the slot's confirmed position, written to every location before the slot
moves (the operator moves it, after every copy verified). A run that fails leaves the slot where it
was: the next run captures the same changes again (see ``repository.segments`` for the format)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any

from bhv360_backup.errors import BackupError, first_line
from bhv360_backup.postgres.positions import lsn_position
from bhv360_backup.producers.storage import copy_object
from bhv360_backup.repository.blobs import BlobStore, copy_snapshot_blobs
from bhv360_backup.repository.locks import shared_lock
from bhv360_backup.repository.manifest import Manifest, parse_iso
from bhv360_backup.repository.scratch import ScratchIndex
from bhv360_backup.repository.segments import CHANGES_ARTIFACT, OBJECTS_ARTIFACT, SEGMENT_BLOBS_ARTIFACT
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.sources.changes import BARRIER_PREFIX, PLUGIN, ChangeSource, changed_tables
from bhv360_backup.sources.storage import ObjectGone, ObjectInfo, StorageSource
from bhv360_backup.streams import gzip_json_lines

log = logging.getLogger(__name__)

STORAGE_OBJECTS = ("storage", "objects")
STORAGE_BUCKETS = ("storage", "buckets")


@dataclass
class SegmentStats:
    transactions: int = 0
    changes: int = 0
    tables: dict[str, int] = field(default_factory=dict)
    first_commit: str | None = None
    last_commit: str | None = None
    last_commit_lsn: str | None = None  # the end of the last commit record decoded
    lines: int = 0  # every line decoded (what upto_nchanges counts)
    messages: dict[str, int] = field(default_factory=dict)  # logical decoding messages by prefix
    without_key: dict[str, str] = field(default_factory=dict)  # table -> first commit time it was inexact
    objects: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)  # every event per object

    def to_dict(self) -> dict[str, Any]:
        return {"transactions": self.transactions, "changes": self.changes, "tables": self.tables,
                "first_commit_time": self.first_commit, "last_commit_time": self.last_commit,
                "not_exact": self.without_key,
                **({"messages": self.messages} if self.messages else {})}


def _value(columns: list[list[Any]] | None, name: str) -> Any:
    return next((value for column, _, value in columns or [] if column == name), None)


def _counted(changes: Iterator[dict[str, Any]], stats: SegmentStats, keys: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The changes as they stream to the segment, counted, with the Storage object events noted."""
    pending: list[dict[str, Any]] = []
    for change in changes:
        stats.lines += 1
        if "commit" in change:
            stats.transactions += 1
            stats.first_commit = stats.first_commit or change["time"]
            stats.last_commit = change["time"]
            stats.last_commit_lsn = change["lsn"]
            for event in pending:
                if event["action"] == "truncate":  # every object before it is gone: only the truncate remains
                    stats.objects.clear()
                stats.objects.setdefault((event["bucket"] or "", event["path"] or event["id"] or ""), []).append(
                    {**event, "commit_time": change["time"]})
            pending.clear()
        elif "op" in change:
            stats.changes += 1
            for schema, name in change.get("tables") or [change["table"]]:
                table = f"{schema}.{name}"
                stats.tables[table] = stats.tables.get(table, 0) + 1
                key = keys.get(table, {})
                if change["op"] in ("update", "delete") and not key.get("columns") and key.get("identity") != "f":
                    stats.without_key.setdefault(table, stats.last_commit or "")
            if change.get("table") == list(STORAGE_OBJECTS):
                pending.append(_object_event(change))
            elif change.get("table") == list(STORAGE_BUCKETS):
                pending.append(_bucket_event(change))
            elif change["op"] == "truncate" and list(STORAGE_OBJECTS) in change["tables"]:
                pending.append({"action": "truncate", "id": None, "bucket": None, "path": None})
        elif "message" in change and change["message"] != BARRIER_PREFIX:
            stats.messages[change["message"]] = stats.messages.get(change["message"], 0) + 1
        yield change


def _object_event(change: dict[str, Any]) -> dict[str, Any]:
    tuple_ = change.get("new") or change.get("old_key") or []
    action = "delete" if change["op"] == "delete" else "put"
    event = {"action": action, "id": _value(tuple_, "id"), "bucket": _value(tuple_, "bucket_id"),
             "path": _value(tuple_, "name")}
    if action == "put":
        try:
            etag = (json.loads(_value(tuple_, "metadata") or "{}") or {}).get("eTag")
        except (TypeError, ValueError):
            etag = None
        event["row_etag"] = etag.strip('"') if isinstance(etag, str) else None
    return event


def _bucket_event(change: dict[str, Any]) -> dict[str, Any]:
    """A bucket created, changed (``bucket``, with its definition as the row has it) or deleted."""
    tuple_ = change.get("new") or change.get("old_key") or []
    bucket = _value(tuple_, "id")
    if change["op"] == "delete":
        return {"action": "bucket_delete", "id": None, "bucket": bucket, "path": ""}
    limit, types = _value(tuple_, "file_size_limit"), _value(tuple_, "allowed_mime_types")
    return {"action": "bucket", "id": None, "bucket": bucket, "path": "",
            "definition": {"id": bucket, "public": _value(tuple_, "public") in ("true", True),
                           "file_size_limit": int(limit) if limit is not None else None,
                           "allowed_mime_types": [item.strip('"') for item in types.strip("{}").split(",") if item]
                           if types is not None else None}}


def _same_version(row_etag: str | None, md5: str | None, *, newest: bool) -> bool:
    """Whether the bytes read are the version the row names: a single-part upload's eTag is its MD5. For
    the newest version a multipart eTag (``…-N``) or none cannot be checked and is taken as it; an older
    version only matches where its eTag proves the same bytes."""
    if row_etag is not None and row_etag == md5:
        return True
    return newest and (row_etag is None or "-" in row_etag)


def _store_objects(stats: SegmentStats, storage: StorageSource, blobs: BlobStore) -> tuple[list[dict], list[dict]]:
    """Copy into the blob store every version the segment's transactions put that can still be read: the
    object as it is now, where its bytes are the version the row names (by eTag); the object events (with
    names) and the blob rows (without). A version that can no longer be read (overwritten again, or
    deleted, before this capture) is an ``unavailable`` event: a restore to a moment it was current refuses."""
    events, blob_rows = [], []
    for history in stats.objects.values():
        current, newest = None, True
        for event in reversed(history):  # newest first: only the newest put may be what the source holds now
            if event["action"] != "put" or not (event["bucket"] and event["path"]):
                continue
            if current is None:
                obj = ObjectInfo(event["bucket"], event["path"], 0, "", event["commit_time"], id=event["id"])
                try:
                    current = copy_object(storage, blobs, obj)
                    blob_rows.append(current.blob_row())
                except ObjectGone:
                    current = False  # deleted since: no version of this segment can be read
            if current and _same_version(event.get("row_etag"), current.md5, newest=newest):
                event.update(current.row())
            else:
                event["action"] = "unavailable"
            newest = False
        events += history
    events.sort(key=lambda e: e["commit_time"])
    return events, blob_rows


PIECE_LINES = 500_000  # a backlog is captured a piece at a time: each run ends, the next goes on


def capture_segment(
    source: ChangeSource, writer: BackupWriter, *, dag_id: str, run_id: str,
    storage: Callable[[], StorageSource] | None = None, previous_schema: dict[str, str] | None = None,
    piece_lines: int = PIECE_LINES,
) -> Manifest:
    """Write the changes committed since the slot's confirmed position as one segment in every live
    location of ``writer`` and publish it; the slot is not moved here. A backlog (after an outage) is
    taken a piece of whole transactions at a time (``piece_lines`` decoded lines): the segment ends at its
    last commit and says ``backlog``, so every run finishes and the next one goes on from there. A retry
    reuses the segment an earlier try of the run completed."""
    with shared_lock(writer.live, run_id, unreachable=writer.drop):  # a reused segment's blobs are copied under it
        reused = writer.resume(copy_extra=copy_snapshot_blobs)
        if reused is not None:
            return reused
        return _capture(source, writer, dag_id=dag_id, run_id=run_id, storage=storage, previous_schema=previous_schema,
                        piece_lines=piece_lines)


def _capture(source: ChangeSource, writer: BackupWriter, *, dag_id: str, run_id: str,
             storage: Callable[[], StorageSource] | None, previous_schema: dict[str, str] | None,
             piece_lines: int) -> Manifest:
    source.check()
    created = source.ensure_slot()
    start = source.state().confirmed_flush_lsn
    seen = source.observe()
    stats = SegmentStats()
    try:
        # level 1: the change stream is the capture's hot path (level 6 cost about a tenth of its time)
        writer.add(CHANGES_ARTIFACT, gzip_json_lines(_counted(source.changes(seen["lsn"], piece_lines), stats,
                                                              seen["keys"]), level=1))
        storage_summary: dict[str, Any] = {"objects": 0}
        if stats.objects:
            if storage is None:
                raise BackupError("storage.objects changed but no storage source is configured to copy the files")
            with ScratchIndex() as scratch:
                events, blob_rows = _store_objects(stats, storage(), BlobStore(writer, scratch, listed=False))
            writer.flush()
            writer.add(OBJECTS_ARTIFACT, gzip_json_lines(events))
            writer.add(SEGMENT_BLOBS_ARTIFACT, gzip_json_lines(blob_rows), encrypt=False)
            storage_summary = {"objects": len(events), "stored": len(blob_rows),
                               "deleted": sum(e["action"] == "delete" for e in events),
                               "unavailable": sum(e["action"] == "unavailable" for e in events),
                               "bytes": sum(row["size"] for row in blob_rows)}
        writer.verify()
        changed = changed_tables(previous_schema, seen["schema"]) if previous_schema is not None else []
        # the slot moves to what was decoded: the bound, or the end of a commit record that crossed it; a
        # piece of a backlog ends at its last commit, and covers the commits up to that one's time
        backlog = stats.lines >= piece_lines and stats.last_commit_lsn is not None
        end = stats.last_commit_lsn if backlog else max(seen["lsn"], stats.last_commit_lsn or seen["lsn"],
                                                        key=lsn_position)
        until = parse_iso(stats.last_commit) if backlog else seen["time"]
        return writer.publish(dag_id=dag_id, run_id=run_id, details={
            "source": source.describe(), "slot": source.slot, "plugin": PLUGIN, "slot_created": created,
            "start_lsn": start, "end_lsn": end, "captured_until": until.astimezone(timezone.utc).isoformat(),
            **({"backlog": True} if backlog else {}),
            **stats.to_dict(), "keys": seen["keys"], "sequences": seen["sequences"],
            "fingerprint": seen["fingerprint"], "schema": seen["schema"],
            **({"schema_changed": {"tables": changed}} if changed else {}),
            "storage": storage_summary,
        })
    except BaseException as error:
        log.error("incremental capture %s failed: %s", writer.backup_id, first_line(error))
        writer.discard()
        raise
