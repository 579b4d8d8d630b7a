"""PostgreSQL as a source of committed changes: a logical replication slot the package creates and owns,
read with ``test_decoding`` through SQL and moved forward only when the caller says so.

What the source needs (checked before every capture, each missing thing named): ``wal_level = logical``;
a role with the ``REPLICATION`` attribute (or a superuser) to create and read the slot; a free
replication slot; a direct connection (not a transaction pooler). No publication is needed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from bhv360_backup.errors import ConfigurationError
from bhv360_backup.postgres import access
from bhv360_backup.postgres.changes import parse
from bhv360_backup.postgres.client import PgTarget

PLUGIN = "test_decoding"
PEEK_OPTIONS = ["include-xids", "1", "include-timestamp", "1", "skip-empty-xacts", "1"]
SUPABASE_TRANSACTION_POOLER_PORT = 6543
FETCH_ROWS = 2000
BARRIER_PREFIX = "bhv360-capture"

KEYS_SQL = """
SELECT n.nspname, c.relname, c.relreplident::text,
       coalesce((SELECT array_agg(a.attname ORDER BY array_position(i.indkey, a.attnum))
                 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                 WHERE i.indrelid = c.oid AND ((c.relreplident = 'd' AND i.indisprimary)
                                               OR (c.relreplident = 'i' AND i.indisreplident))), '{}')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
"""
COLUMNS_SQL = """
SELECT n.nspname || '.' || c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
ORDER BY 1, a.attnum
"""


TABLE_EXTRAS_SQL = """
SELECT n.nspname || '.' || c.relname, jsonb_build_object(
  'replica_identity', c.relreplident::text,
  'defaults', (SELECT coalesce(jsonb_object_agg(a.attname, jsonb_build_array(pg_get_expr(d.adbin, d.adrelid),
                                                                          a.attgenerated::text, a.attidentity::text)),
                               '{}')
               FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
               WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                 AND (d.adbin IS NOT NULL OR a.attgenerated <> '' OR a.attidentity <> '')),
  'constraints', (SELECT coalesce(jsonb_object_agg(k.conname, pg_get_constraintdef(k.oid)), '{}')
                  FROM pg_constraint k WHERE k.conrelid = c.oid),
  'indexes', (SELECT coalesce(jsonb_agg(pg_get_indexdef(i.indexrelid) ORDER BY 1), '[]')
              FROM pg_index i WHERE i.indrelid = c.oid))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
"""
DEFINITIONS_SQL = """
SELECT 'view ' || n.nspname || '.' || c.relname, pg_get_viewdef(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text, pg_get_functiondef(p.oid)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE p.prokind IN ('f', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
"""


@dataclass(frozen=True)
class SlotState:
    name: str
    exists: bool
    confirmed_flush_lsn: str | None = None
    restart_lsn: str | None = None
    active: bool = False
    retained_bytes: int = 0
    plugin: str | None = None
    wal_status: str | None = None

    @property
    def lost(self) -> bool:
        """The server invalidated the slot (it held back more WAL than ``max_slot_wal_keep_size``): the
        changes since its confirmed position are gone, and it can never be read again."""
        return self.exists and (self.wal_status == "lost" or self.restart_lsn is None)

    def recovery(self) -> str:
        return (f"replication slot {self.name} was invalidated by the server (wal_status {self.wal_status}; it held "
                "back more WAL than max_slot_wal_keep_size): the changes since its last capture are lost and no "
                "point-in-time restore reaches past that capture. Recover: drop it (SELECT "
                f"pg_drop_replication_slot('{self.name}')), run the incremental DAG once (it creates a new slot), "
                "then run the database backup DAG right away: its backup starts the new chain")


def slot_state(cursor: psycopg.Cursor, slot: str) -> SlotState:
    row = cursor.execute(
        "SELECT confirmed_flush_lsn::text, restart_lsn::text, active, plugin, "
        "coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint, wal_status "
        "FROM pg_replication_slots WHERE slot_name = %s AND database = current_database()", [slot]).fetchone()
    if row is None:
        return SlotState(slot, False)
    return SlotState(slot, True, row[0], row[1], row[2], row[4], row[3], row[5])


class ChangeSource:
    """The slot ``slot`` of ``target``'s database."""

    def __init__(self, target: PgTarget, slot: str) -> None:
        self.target = target
        self.slot = slot

    def describe(self) -> str:
        return f"slot {self.slot} of {self.target.describe()}"

    def problems(self, cursor: psycopg.Cursor) -> list[str]:
        """What the source lacks for change capture, each named with how to give it."""
        problems = []
        if self.target.port == SUPABASE_TRANSACTION_POOLER_PORT:
            problems.append(f"{self.target.describe()} is Supabase's transaction pooler (port 6543): use the direct "
                            "connection (Project Settings > Database > Connection string > Direct, port 5432)")
        wal_level = cursor.execute("SHOW wal_level").fetchone()[0]
        if wal_level != "logical":
            problems.append(f"the source's wal_level is {wal_level}, change capture needs logical (set wal_level = "
                            "logical and restart the server; on hosted Supabase it is logical already)")
        superuser, replication = cursor.execute(
            "SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user").fetchone()
        if not (superuser or replication):
            user = cursor.execute("SELECT current_user").fetchone()[0]
            problems.append(f"role {user} may not create or read a replication slot: give it the REPLICATION "
                            f"attribute (ALTER ROLE {user} WITH REPLICATION) or connect as a role that has it")
        state = slot_state(cursor, self.slot)
        if state.lost:
            problems.append(state.recovery())
        if state.exists and state.plugin != PLUGIN:
            problems.append(f"replication slot {self.slot} exists with output plugin {state.plugin}, not {PLUGIN}: "
                            f"drop it (SELECT pg_drop_replication_slot('{self.slot}')) or name another slot")
        if not state.exists:
            free = cursor.execute("SELECT current_setting('max_replication_slots')::int - "
                                  "(SELECT count(*) FROM pg_replication_slots)").fetchone()[0]
            if free < 1:
                problems.append("max_replication_slots is used up: raise it, or drop a slot no longer used")
        return problems

    def check(self) -> None:
        with self.target.connect() as connection:
            problems = self.problems(connection.cursor())
        if problems:
            raise ConfigurationError(f"incremental backups cannot read {self.describe()}: " + "; ".join(problems))

    def ensure_slot(self) -> bool:
        """Create the slot if it does not exist; True when it was created now."""
        with self.target.connect(autocommit=True) as connection:
            if slot_state(connection.cursor(), self.slot).exists:
                return False
            connection.execute("SELECT pg_create_logical_replication_slot(%s, %s)", [self.slot, PLUGIN])
            return True

    def state(self) -> SlotState:
        with self.target.connect() as connection:
            return slot_state(connection.cursor(), self.slot)

    def observe(self) -> dict[str, Any]:
        """Where the capture will read up to, and what is true there: the WAL position and server time,
        the key columns of every table, every sequence's value, and a fingerprint of the schema and the
        access model (a change in it breaks the exactness of a replay past it).

        The position is the *flushed* end of WAL (logical decoding reads no further), taken after a
        barrier: a transaction of this session that writes one WAL record and commits synchronously, so
        every commit record written before it (asynchronous commits included) is flushed, and decoded,
        before the position is read. Every commit stamped before the time read first is then in this
        capture or an earlier one."""
        with self.target.connect(autocommit=True) as connection:
            cursor = connection.cursor()
            cursor.execute("SET TIME ZONE 'UTC'")
            cursor.execute("SET synchronous_commit = on")
            with connection.transaction():
                now = cursor.execute("SELECT clock_timestamp()").fetchone()[0]
                cursor.execute("SELECT pg_current_xact_id()")
                cursor.execute("SELECT pg_logical_emit_message(false, %s, '')", [BARRIER_PREFIX])
            with connection.transaction():
                lsn = cursor.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()[0]
                keys = {f"{schema}.{name}": {"identity": identity, "columns": list(columns)}
                        for schema, name, identity, columns in cursor.execute(KEYS_SQL).fetchall()}
                sequences = sequence_values(cursor)
                schema = schema_digests(cursor)
        return {"lsn": lsn, "time": now, "keys": keys, "sequences": sequences, "schema": schema,
                "fingerprint": fingerprint_of(schema)}

    def changes(self, upto_lsn: str, upto_nchanges: int | None = None) -> Iterator[dict[str, Any]]:
        """Every change committed before ``upto_lsn`` that the slot has not confirmed, in commit order,
        streamed (``begin`` and ``commit`` carry the LSN of their line; a commit's is the end of its
        record); with ``upto_nchanges``, only whole transactions until that many lines are out (a piece
        of a backlog). Type names are read with an empty ``search_path``, so every one is schema-qualified."""
        with self.target.connect() as connection, connection.transaction():
            connection.execute("SET LOCAL search_path = ''")
            with connection.cursor(name="bhv360_changes") as cursor:
                cursor.itersize = FETCH_ROWS
                cursor.execute(sql.SQL("SELECT lsn::text, data FROM pg_logical_slot_peek_changes(%s, %s, %s, {})")
                               .format(sql.SQL(", ").join(map(sql.Literal, PEEK_OPTIONS))),
                               [self.slot, upto_lsn, upto_nchanges])
                for lsn, data in cursor:
                    change = parse(data)
                    if "begin" in change or "commit" in change:
                        change["lsn"] = lsn
                    yield change

    def advance(self, lsn: str) -> None:
        """Confirm everything before ``lsn``: the source may now recycle that WAL."""
        with self.target.connect(autocommit=True) as connection:
            connection.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", [self.slot, lsn])

    def drop(self) -> bool:
        with self.target.connect(autocommit=True) as connection:
            if not slot_state(connection.cursor(), self.slot).exists:
                return False
            connection.execute("SELECT pg_drop_replication_slot(%s)", [self.slot])
            return True


ACCESS_MODEL_KEY = "(grants, policies and RLS)"


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def schema_digests(cursor: psycopg.Cursor) -> dict[str, str]:
    """A digest of everything a replay's exactness depends on staying the same, read with an empty
    ``search_path``: per table its columns (name, type, not null, default, generated, identity), its
    constraints, indexes and replica identity; per view its definition; per function its definition and
    settings; and one of the access model."""
    with access.search_path(cursor, ""):
        tables: dict[str, list] = {}
        for table, column, column_type, not_null in cursor.execute(COLUMNS_SQL).fetchall():
            tables.setdefault(table, []).append([column, column_type, not_null])
        for table, extras in cursor.execute(TABLE_EXTRAS_SQL).fetchall():
            tables.setdefault(table, []).append(extras)
        digests = {table: _digest(columns) for table, columns in tables.items()}
        digests.update((name, _digest(definition)) for name, definition in cursor.execute(DEFINITIONS_SQL).fetchall())
        digests[ACCESS_MODEL_KEY] = _digest(access.capture(cursor, model_format=1)["objects"])
    return digests


def sequence_values(cursor: psycopg.Cursor) -> dict[str, int]:
    """Every sequence's value; one the capture role may not read fails the capture, since
    ``pg_sequences`` would show it as never used and a replay would leave it behind its rows."""
    unreadable = [f"{schema}.{name}" for schema, name in cursor.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'S' AND n.nspname NOT LIKE 'pg\\_temp%' "
        "AND CASE WHEN c.relkind = 'S' THEN NOT has_sequence_privilege(c.oid, 'SELECT, USAGE') END "  # only sequences
        "ORDER BY 1, 2")]
    if unreadable:
        user = cursor.execute("SELECT current_user").fetchone()[0]
        raise ConfigurationError(
            f"the capture role {user} may not read sequence(s) {', '.join(unreadable)}: a replay would leave them "
            f"behind their rows. Grant it SELECT on each (GRANT SELECT ON SEQUENCE {unreadable[0]} TO {user}), or "
            "membership of pg_read_all_data")
    return {f"{schema}.{name}": value for schema, name, value in cursor.execute(
        "SELECT schemaname, sequencename, last_value FROM pg_sequences WHERE last_value IS NOT NULL")}


def fingerprint_of(digests: dict[str, str]) -> str:
    return _digest(digests)


def schema_fingerprint(cursor: psycopg.Cursor) -> str:
    return fingerprint_of(schema_digests(cursor))


def changed_tables(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What a schema change touched: tables, views and functions added, dropped or altered, or the access
    model."""
    return sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))
