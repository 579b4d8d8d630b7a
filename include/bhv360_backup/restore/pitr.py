"""Point-in-time recovery: the chain of incremental segments after a database backup, and their replay.

A decoded transaction is in the dump if and only if it is visible in the dump's snapshot (recorded with
the backup): the replay applies every other transaction of the chain, whole, in commit order, up to the
last one committed at or before the moment asked for, and checks each change as it goes (an update or
delete must touch exactly one row, an insert must not collide). It stops, at the last exact point and
saying why, before a change it cannot replay exactly: a table without a primary key or replica
identity, or a schema or access change (which the chain itself marks).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from pyrage.x25519 import Identity

from bhv360_backup.errors import BackupError, first_line
from bhv360_backup.locations.base import Location
from bhv360_backup.postgres.client import PgTarget
from bhv360_backup.postgres.positions import lsn_position, snapshot_visible
from bhv360_backup.repository.catalog import list_backups, read_manifest
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import Manifest, parse_iso
from bhv360_backup.repository.segments import (
    Segment,
    build_chain,
    read_changes,
    read_object_events,
)
from bhv360_backup.repository.snapshots import IndexEntry
from bhv360_backup.repository.verify import verify_backup

log = logging.getLogger(__name__)


class ReplayMismatch(BackupError):
    """The chain does not fit the restored database: it is not the one the segments follow."""


def segments_in(locations: Sequence[Location]) -> dict[str, dict[str, Manifest]]:
    """Every complete segment's manifest, by id, per location that has it."""
    found: dict[str, dict[str, Manifest]] = {}
    for location in locations:
        try:
            ids = list_backups(location, BackupType.INCREMENTAL)
        except Exception as error:  # noqa: BLE001 - the other location may hold them
            log.warning("cannot list incremental segments in %s: %s", location.name, first_line(error))
            continue
        for backup_id in ids:
            try:
                found.setdefault(backup_id, {})[location.name] = read_manifest(location, BackupType.INCREMENTAL, backup_id)
            except BackupError as error:
                log.warning("segment %s in %s unreadable: %s", backup_id, location.name, first_line(error))
    return found


def intact_copy(manifests: Mapping[str, Manifest], locations: Mapping[str, Location]) -> str | None:
    """The first location whose copy of a segment reads back whole (sha256 of every artifact)."""
    for name, manifest in manifests.items():
        if not verify_backup(locations[name], manifest, deep=True):
            return name
    return None


@dataclass
class ChainPlan:
    """A replay's plan: the segments and the location of each intact copy, and the moment it reaches."""

    base_id: str
    segments: list[tuple[str, str]]  # (segment id, location)
    reaches: str | None
    until: str | None
    damaged: list[str] = field(default_factory=list)
    stop: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base_id, "segments": [list(pair) for pair in self.segments], "reaches": self.reaches,
                "until": self.until, "damaged": self.damaged, "stop": self.stop}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChainPlan:
        return cls(data["base"], [tuple(pair) for pair in data["segments"]], data["reaches"], data["until"],
                   data.get("damaged", []), data.get("stop"))


def _intact_chain(base: Manifest, locations: Mapping[str, Location], found: Mapping[str, dict[str, Manifest]],
                  from_lsn: str, fingerprint: str | None, since: str | None, until: datetime | None, *,
                  accept_earlier: bool) -> ChainPlan:
    """The chain from ``from_lsn`` through segments with an intact copy (a damaged one is left out and the
    chain rebuilt without it). A gap or a schema change before ``until`` is refused, naming where the
    chain stops, unless ``accept_earlier``."""
    damaged: list[str] = []
    while True:
        candidates = [Segment.of(next(iter(copies.values()))) for segment_id, copies in found.items()
                      if segment_id not in damaged]
        chain = build_chain(candidates, from_lsn, fingerprint, until)
        bad = next((segment for segment in chain.segments
                    if intact_copy(found[segment.backup_id], locations) is None), None)
        if bad is None:
            break
        damaged.append(bad.backup_id)
    stop = chain.gap or chain.schema_change
    if damaged and chain.gap:
        stop = f"{chain.gap}; damaged in every location: {', '.join(damaged)}"
    if stop and until is not None and not accept_earlier:
        reached = chain.reaches.isoformat() if chain.reaches else since
        raise BackupError(f"cannot restore {base.type.value} backup {base.backup_id} to {until.isoformat()}: {stop}. "
                          f"The chain reaches {reached}; set accept_earlier_point to restore that moment instead")
    return ChainPlan(base.backup_id, [(segment.backup_id, intact_copy(found[segment.backup_id], locations))
                                      for segment in chain.segments],
                     chain.reaches.isoformat() if chain.reaches else None, until.isoformat() if until else None,
                     damaged, stop)


def plan_chain(base: Manifest, locations: Mapping[str, Location], until: datetime | None, *,
               accept_earlier: bool) -> ChainPlan:
    """The segments that take database backup ``base`` to ``until`` (or as far as they go)."""
    point = base.details.get("chain") or {}
    if not point.get("exists"):
        raise BackupError(f"database backup {base.backup_id} has no incremental chain (no capture slot existed when "
                          "it was made): restore it without a point in time, or choose a later backup")
    return _intact_chain(base, locations, segments_in(list(locations.values())), point["confirmed_flush_lsn"],
                         point.get("fingerprint"), point.get("snapshot_at"), until, accept_earlier=accept_earlier)


def plan_storage_chain(snapshot: Manifest, locations: Mapping[str, Location], until: datetime | None, *,
                       accept_earlier: bool) -> ChainPlan | None:
    """The segments whose object events follow a storage snapshot: from the one that captured the moment
    its listing started; None when no segment does."""
    found = segments_in(list(locations.values()))
    started = parse_iso(snapshot.details["listing_started_at"])
    segments = sorted((Segment.of(next(iter(copies.values()))) for copies in found.values()),
                      key=lambda segment: segment.start)
    first = next((segment for segment in segments if segment.captured_until > started), None)
    if first is None:
        return None
    return _intact_chain(snapshot, locations, found, first.start_lsn, None, snapshot.details["listing_started_at"],
                         until, accept_earlier=accept_earlier)


@dataclass
class ObjectsAt:
    """The objects a storage snapshot moved on to a moment holds; ``unnamed``: deletes whose object cannot
    be named; ``unavailable``: objects whose version current at the moment could not be read when it was
    captured (overwritten again or deleted first), each with the time that version was written."""

    entries: list[IndexEntry]
    unnamed: list[str]
    unavailable: dict[str, str]
    buckets: list[dict[str, Any]]  # the bucket definitions at the moment


def objects_at(entries: Sequence[IndexEntry], snapshot: Manifest, plan: ChainPlan, locations: Mapping[str, Location],
               identities: Sequence[Identity] = ()) -> ObjectsAt:
    """The snapshot's objects moved on to ``plan.until`` by the segments' object events (puts and deletes
    committed after its listing started), in index order; a delete whose object cannot be named is returned
    apart. Objects are followed by id: Supabase moves an object (to another name or bucket) by updating its
    row, so a put of a known id under a new name removes the old one."""
    started = parse_iso(snapshot.details["listing_started_at"])
    until = parse_iso(plan.until) if plan.until else None
    by_name = {(entry.bucket, entry.path): entry for entry in entries}
    by_id = {entry.object_id: (entry.bucket, entry.path) for entry in entries if entry.object_id}
    unnamed: list[str] = []
    unavailable: dict[tuple[str, str], str] = {}
    buckets = {bucket["id"]: bucket for bucket in snapshot.details.get("buckets", [])}

    def result() -> ObjectsAt:
        return ObjectsAt([by_name[name] for name in sorted(by_name)], unnamed,
                         {f"{bucket}/{path}": moment for (bucket, path), moment in sorted(unavailable.items())},
                         [buckets[bucket] for bucket in sorted(buckets)])

    for segment_id, location_name in plan.segments:
        manifest = read_manifest(locations[location_name], BackupType.INCREMENTAL, segment_id)
        for event in read_object_events(locations[location_name], manifest, identities):
            moment = datetime.fromisoformat(event["commit_time"])
            if until is not None and moment > until:
                return result()
            if moment <= started:
                continue
            if event["action"] == "bucket":
                buckets[event["bucket"]] = event["definition"]
                continue
            if event["action"] == "bucket_delete":
                buckets.pop(event["bucket"], None)
                continue
            name = (event["bucket"], event["path"]) if event.get("path") else by_id.get(event.get("id"))
            if name is not None and event["action"] in ("put", "delete", "unavailable"):
                unavailable.pop(name, None)
            if event["action"] in ("put", "unavailable"):
                moved_from = by_id.get(event.get("id"))
                if moved_from not in (None, name):  # a move keeps the row's id: the old name is gone
                    by_name.pop(moved_from, None)
                    unavailable.pop(moved_from, None)
                if event.get("id"):
                    by_id[event["id"]] = name
                if event["action"] == "put":
                    by_name[name] = IndexEntry.from_row(event)
                else:  # the version written then was never read: a restore to a moment it was current refuses
                    unavailable[name] = event["commit_time"]
            elif event["action"] == "truncate":  # TRUNCATE storage.objects: every object row is gone
                by_name.clear()
                by_id.clear()
                unavailable.clear()
            elif event["action"] == "delete":
                if name is None:
                    unnamed.append(str(event.get("id")))
                else:
                    by_name.pop(name, None)
    return result()


def outside_change_stream(details: Mapping[str, Any]) -> str | None:
    """What a point-in-time restore over this backup gives as of the dump, not of the moment asked for
    (logical decoding never carries it), in words for the plan and the report; None when nothing."""
    outside = details.get("outside_change_stream") or {}
    parts = []
    if outside.get("unlogged_tables"):
        parts.append(f"unlogged table(s) {', '.join(outside['unlogged_tables'][:20])}")
    if outside.get("materialized_views"):
        parts.append(f"materialized view(s) {', '.join(outside['materialized_views'][:20])} (not refreshed)")
    if outside.get("large_objects"):
        parts.append(f"{outside['large_objects']} large object(s)")
    if not parts:
        return None
    return ("restored as of the database backup, not of the moment asked for (logical decoding does not carry "
            "them): " + "; ".join(parts))


@dataclass
class ReplayReport:
    segments: int = 0
    transactions: int = 0
    changes: int = 0
    in_the_dump: int = 0
    reached: str | None = None
    stopped: str | None = None
    sequences: int = 0
    platform_changes: int = 0  # changes of the platform's own tables, left to the new project

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TargetColumn:
    """A column of a replay's target table as its catalog says: the type to cast a decoded value to
    (schema-qualified, with its modifier: ``character(8)``, ``numeric(5,2)``), and whether the server
    computes it (a generated column is never written; an identity column ``GENERATED ALWAYS`` only
    with ``OVERRIDING SYSTEM VALUE``)."""

    name: str
    type: str
    generated: bool
    identity_always: bool


TARGET_COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attgenerated <> '', a.attidentity = 'a'
FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""


class TargetCatalog:
    """The target's columns per table, read once each on a session with an empty ``search_path`` so every
    type name is schema-qualified (never the name the decoder printed: it drops type modifiers)."""

    def __init__(self, connection: psycopg.Connection) -> None:
        self.connection = connection
        self.connection.execute("SET search_path = ''")
        self.connection.commit()
        self.tables: dict[tuple[str, str], dict[str, TargetColumn]] = {}

    def columns(self, table: Sequence[str]) -> dict[str, TargetColumn]:
        key = (table[0], table[1])
        if key not in self.tables:
            name = _table(table).as_string(self.connection)
            try:
                rows = self.connection.execute(TARGET_COLUMNS_SQL, [name]).fetchall()
            except psycopg.Error as error:
                self.connection.rollback()
                raise ReplayMismatch(f"table {'.'.join(table)} of the change stream is not in the target: "
                                     f"{first_line(error)}") from None
            self.connection.rollback()
            self.tables[key] = {row[0]: TargetColumn(*row) for row in rows}
        return self.tables[key]

    def column(self, table: Sequence[str], name: str) -> TargetColumn:
        column = self.columns(table).get(name)
        if column is None:
            raise ReplayMismatch(f"column {name} of {'.'.join(table)} is in the change stream but not in the target")
        return column


def _table(table: Sequence[str]) -> sql.Composable:
    return sql.SQL("{}.{}").format(sql.Identifier(table[0]), sql.Identifier(table[1]))


def _typed(column: TargetColumn) -> sql.Composable:
    return sql.SQL("%s::{}").format(sql.SQL(column.type))  # the type comes from the target's catalog


def _key_match(table: Sequence[str], old: list[list[Any]], catalog: TargetCatalog) -> tuple[sql.Composable, list[Any]]:
    """A WHERE clause finding one row by its key columns."""
    columns = [catalog.column(table, name) for name, _, _ in old]
    condition = sql.SQL(" AND ").join(sql.SQL("{} = {}").format(sql.Identifier(column.name), _typed(column))
                                      for column in columns)
    return condition, [value for _, _, value in old]


def _full_match(table: Sequence[str], old: list[list[Any]], catalog: TargetCatalog) -> tuple[sql.Composable, list[Any]]:
    """For REPLICA IDENTITY FULL: every column of the row, compared as its type's text (some types have no
    equality); a column the old tuple leaves out was NULL. Rows matching it are identical, so any one of
    them stands for the row changed."""
    old_values = {name: value for name, _, value in old}
    for name in old_values:
        catalog.column(table, name)
    parts, params = [], []
    for column in catalog.columns(table).values():
        if old_values.get(column.name) is None:
            parts.append(sql.SQL("{} IS NULL").format(sql.Identifier(column.name)))
        else:
            parts.append(sql.SQL("{}::text = ({})::text").format(sql.Identifier(column.name), _typed(column)))
            params.append(old_values[column.name])
    return sql.SQL(" AND ").join(parts), params


def _statement(change: Mapping[str, Any], keys: Mapping[str, Any],
               catalog: TargetCatalog) -> tuple[sql.Composable, list[Any], bool] | str:
    """The SQL that replays one change, its parameters and whether it must touch exactly one row; or,
    when it cannot be replayed exactly, why."""
    if change["op"] == "truncate":
        return (sql.SQL("TRUNCATE {}{}{}").format(sql.SQL(", ").join(map(_table, change["tables"])),
                                                   sql.SQL(" RESTART IDENTITY" if change["restart_seqs"] else ""),
                                                   sql.SQL(" CASCADE" if change["cascade"] else "")), [], False)
    table = change["table"]
    name = ".".join(table)
    if change["op"] == "insert":
        columns = [(catalog.column(table, column), value) for column, _, value in change["new"]]
        columns = [(column, value) for column, value in columns if not column.generated]
        overriding = " OVERRIDING SYSTEM VALUE" if any(column.identity_always for column, _ in columns) else ""
        return (sql.SQL("INSERT INTO {} ({}){} VALUES ({})").format(
            _table(table), sql.SQL(", ").join(sql.Identifier(column.name) for column, _ in columns), sql.SQL(overriding),
            sql.SQL(", ").join(_typed(column) for column, _ in columns)), [value for _, value in columns], False)
    key = keys.get(name, {})
    full = key.get("identity") == "f"
    old = change.get("old_key")
    if old is None and change["op"] == "update" and key.get("columns"):
        old = [column for column in change["new"] if column[0] in key["columns"]]
    if not old:
        return f"table {name} has no primary key or replica identity, so its {change['op']} cannot be replayed exactly"
    if full and change.get("old_key") is not None:
        where, where_params = _full_match(table, old, catalog)
        condition = sql.SQL("ctid = (SELECT ctid FROM {} WHERE {} LIMIT 1)").format(_table(table), where)
    else:
        condition, where_params = _key_match(table, old, catalog)
    if change["op"] == "delete":
        return sql.SQL("DELETE FROM {} WHERE {}").format(_table(table), condition), where_params, True
    old_values = {column: value for column, _, value in change.get("old_key") or []}
    sets = []
    for column_name, _, value in change["new"]:
        column = catalog.column(table, column_name)
        if column.generated:
            continue
        if column.identity_always:
            if column_name in old_values and old_values[column_name] != value:
                return (f"an update of {name} changed its GENERATED ALWAYS identity column {column_name}, which "
                        "cannot be written back exactly")
            continue
        sets.append((column, value))
    if not sets:
        return sql.SQL("SELECT 1 FROM {} WHERE {}").format(_table(table), condition), where_params, True
    return (sql.SQL("UPDATE {} SET {} WHERE {}").format(
        _table(table), sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(column.name), _typed(column))
                                          for column, _ in sets), condition),
        [value for _, value in sets] + where_params, True)


def replay(target: PgTarget, base: Manifest, plan: ChainPlan, locations: Mapping[str, Location],
           identities: Sequence[Identity] = (), restored: Callable[[str], bool] | None = None) -> ReplayReport:
    """Apply the planned segments' transactions that the dump lacks, up to ``plan.until``; set every
    sequence to its value at the end of the last segment applied. ``restored(table)`` says which tables'
    changes the restore carries (into a Supabase project, the project's: the platform's own tables, such
    as ``realtime`` or ``vault``, are the new project's)."""
    snapshot = base.details["chain"]["snapshot"]
    until = parse_iso(plan.until) if plan.until else None
    report = ReplayReport(stopped=plan.stop)
    applied_position = 0
    applied: dict[int, int] = {}  # xid -> commit position, of the transactions applied: overlapping segments
    sequences: dict[str, int] = {}
    with target.connect() as connection, target.connect() as catalog_connection:
        catalog = TargetCatalog(catalog_connection)
        connection.execute("SET session_replication_role = replica")  # the source ran the triggers and checks
        connection.commit()
        cursor = connection.cursor()
        for segment_id, location_name in plan.segments:
            manifest = read_manifest(locations[location_name], BackupType.INCREMENTAL, segment_id)
            keys = manifest.details.get("keys", {})
            sequences = manifest.details.get("sequences", {})  # at the segment's end: never behind its rows
            start = lsn_position(manifest.details["start_lsn"])
            applied = {xid: position for xid, position in applied.items() if position > start}
            report.segments += 1
            skip, statements, xid = False, 0, None
            for change in read_changes(locations[location_name], manifest, identities):
                if "begin" in change:
                    xid, statements = change["begin"], 0
                    skip = snapshot_visible(snapshot, xid) or xid in applied  # in the dump, or applied already
                    if skip and xid not in applied:
                        report.in_the_dump += 1
                elif "commit" in change:
                    commit_time = datetime.fromisoformat(change["time"])
                    if skip or lsn_position(change["lsn"]) <= applied_position:
                        connection.rollback()
                    elif until is not None and commit_time > until:
                        connection.rollback()
                        return _finish(cursor, connection, report, sequences)
                    else:
                        connection.commit()
                        applied_position = lsn_position(change["lsn"])
                        applied[xid] = applied_position
                        report.transactions += 1
                        report.changes += statements
                        report.reached = change["time"]
                elif "op" in change and not skip:
                    if restored is not None and not all(restored(".".join(table)) for table in
                                                        change.get("tables") or [change["table"]]):
                        report.platform_changes += 1
                        continue
                    built = _statement(change, keys, catalog)
                    if isinstance(built, str):
                        connection.rollback()
                        report.stopped = f"{built} (a transaction committed after {report.reached or 'the dump'})"
                        return _finish(cursor, connection, report, sequences)
                    statement, params, exactly_one = built
                    try:
                        cursor.execute(statement, params)
                    except psycopg.Error as error:
                        connection.rollback()
                        raise ReplayMismatch(f"segment {segment_id}: replaying a change of "
                                             f"{'.'.join(change.get('table') or [])} failed: {first_line(error)}") from None
                    if exactly_one and cursor.rowcount != 1:
                        connection.rollback()
                        raise ReplayMismatch(f"segment {segment_id}: an {change['op']} of {'.'.join(change['table'])} "
                                             f"found {cursor.rowcount} rows, not 1: the segments do not follow this "
                                             "backup")
                    statements += 1
        if restored is not None:
            sequences = {name: value for name, value in sequences.items() if restored(name)}
        return _finish(cursor, connection, report, sequences)


def _finish(cursor: psycopg.Cursor, connection: psycopg.Connection, report: ReplayReport,
            sequences: Mapping[str, int]) -> ReplayReport:
    """Sequences are not in the change stream: each is set to the value the last segment recorded (the
    value at its capture, never behind the rows replayed)."""
    for name, value in sequences.items():
        schema, _, sequence = name.partition(".")
        exists = cursor.execute("SELECT to_regclass(%s) IS NOT NULL",
                                [sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(sequence))
                                 .as_string(connection)]).fetchone()[0]
        if exists:
            cursor.execute("SELECT setval(%s::regclass, %s)", [sql.SQL("{}.{}").format(
                sql.Identifier(schema), sql.Identifier(sequence)).as_string(connection), value])
            report.sequences += 1
    connection.commit()
    return report


def chain_base(locations: Sequence[Location], until: datetime | None) -> str | None:
    """The newest database backup made before ``until`` that starts an incremental chain."""
    best: tuple[str, str] | None = None
    for location in locations:
        try:
            ids = list_backups(location, BackupType.DATABASE)
        except Exception:  # noqa: BLE001, S112 - the other location may list them
            continue
        for backup_id in ids:
            try:
                point = read_manifest(location, BackupType.DATABASE, backup_id).details.get("chain") or {}
            except BackupError:
                continue
            if point.get("exists") and (until is None or parse_iso(point["snapshot_at"]) <= until):
                if best is None or point["snapshot_at"] > best[0]:
                    best = (point["snapshot_at"], backup_id)
    return best[1] if best else None
