"""PostgreSQL as a backup source: a consistent exported snapshot and the dump commands that read it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bhv360_backup.postgres import access
from bhv360_backup.postgres.client import PgTarget
from bhv360_backup.postgres.stats import table_stats
from bhv360_backup.sources.changes import SlotState, schema_fingerprint, slot_state


@dataclass
class DatabaseSnapshot:
    """An exported snapshot held open so ``pg_dump --snapshot`` and the statistics see the same data."""

    snapshot_id: str
    snapshot_time: str
    server_major: int
    server_version: str
    cursor: psycopg.Cursor = field(repr=False)
    chain: dict[str, Any] | None = None

    def table_stats(self) -> dict[str, dict[str, Any]]:
        """Row counts and small-table checksums in the snapshot; may run while ``pg_dump`` streams."""
        return table_stats(self.cursor)

    def stats_and_access(self) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        """The table statistics, then the access model with its row-visibility probes, in the snapshot."""
        stats = self.table_stats()
        return stats, access.record(self.cursor, {table: entry["rows"] for table, entry in stats.items()})

    def outside_change_stream(self) -> dict[str, Any]:
        """What logical decoding never carries: unlogged tables, materialized views, large objects. A
        point-in-time restore gives them as they were at this snapshot."""
        unlogged, views = self.cursor.execute(
            "SELECT coalesce(array_agg(n.nspname || '.' || c.relname ORDER BY 1) FILTER (WHERE c.relkind IN ('r', 'p')), "
            "'{}'), coalesce(array_agg(n.nspname || '.' || c.relname ORDER BY 1) FILTER (WHERE c.relkind = 'm'), '{}') "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE ((c.relkind IN ('r', 'p') AND c.relpersistence = 'u') OR c.relkind = 'm') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema')").fetchone()
        large_objects = self.cursor.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0]
        return {"unlogged_tables": list(unlogged), "materialized_views": list(views), "large_objects": large_objects}

    def vault_secrets(self) -> list[dict[str, Any]] | None:
        """Supabase Vault's secrets, decrypted (name, description, secret), or None without Vault."""
        if self.cursor.execute("SELECT to_regclass('vault.decrypted_secrets')").fetchone()[0] is None:
            return None
        return [{"name": name, "description": description, "secret": secret} for name, description, secret in
                self.cursor.execute("SELECT name, description, decrypted_secret FROM vault.decrypted_secrets "
                                    "ORDER BY name")]

    def has_storage_objects(self) -> bool:
        """Whether the database has Supabase's ``storage.objects`` table."""
        return self.cursor.execute("SELECT to_regclass('storage.objects')").fetchone()[0] is not None

    def storage_object_names(self) -> Iterator[tuple[str, str]]:
        """``(bucket_id, name)`` of every row of ``storage.objects``, streamed."""
        yield from self.cursor.stream("SELECT bucket_id, name FROM storage.objects ORDER BY 1, 2")


@contextlib.contextmanager
def exported_snapshot(target: PgTarget, slot: str | None = None) -> Iterator[DatabaseSnapshot]:
    """Open a repeatable-read transaction and export its snapshot; with ``slot``, record where the snapshot
    stands in that slot's change stream (see :func:`chain_point`)."""
    with target.connect(autocommit=True) as connection:
        with connection.cursor() as cursor:
            # the slot's position before the snapshot: a capture that moves the slot in between leaves its
            # transactions in the segments from here, and the snapshot's visibility skips those it holds
            slot_before = slot_state(cursor, slot) if slot else None
            cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot_id, snapshot_time, version_num, version = cursor.execute(
                "SELECT pg_export_snapshot(), to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
                " current_setting('server_version_num')::int, current_setting('server_version')"
            ).fetchone()
            snapshot = DatabaseSnapshot(
                snapshot_id=snapshot_id,
                snapshot_time=snapshot_time,
                server_major=version_num // 10000,
                server_version=version,
                cursor=cursor,
            )
            try:
                if slot_before is not None:
                    snapshot.chain = chain_point(cursor, slot_before)
                yield snapshot
            except BaseException:
                # the server may be gone with the dump's error in flight: keep that error, not the rollback's
                with contextlib.suppress(psycopg.Error):
                    cursor.execute("ROLLBACK")
                raise
            cursor.execute("ROLLBACK")


def chain_point(cursor: psycopg.Cursor, state: SlotState) -> dict[str, Any]:
    """Where a dump's snapshot stands in the change stream, so incremental segments can be replayed over
    it exactly: the slot's confirmed position read before the snapshot was taken (every change the dump
    lacks is in the segments from there), the snapshot itself (a decoded transaction is already in the
    dump if and only if it is visible in it), the precise snapshot time, and the schema fingerprint the
    chain starts from. A slot the server invalidated starts no chain (``lost``)."""
    point: dict[str, Any] = {"slot": state.name, "exists": state.exists and not state.lost}
    if state.lost:
        point["lost"] = True
    if not point["exists"]:
        return point
    xmin, xmax, xip, at = cursor.execute(
        "SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint, "
        "ARRAY(SELECT x::text::bigint FROM pg_snapshot_xip(s) x), "
        "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') "
        "FROM pg_current_snapshot() s").fetchone()
    return {**point, "confirmed_flush_lsn": state.confirmed_flush_lsn, "snapshot_at": at,
            "snapshot": {"xmin": xmin, "xmax": xmax, "xip": list(xip)}, "fingerprint": schema_fingerprint(cursor)}


def pg_dump_argv(pg_dump: str, snapshot_id: str | None, compress_level: int) -> list[str]:
    argv = [pg_dump, "--format=custom", f"--compress={compress_level}", "--no-password"]
    if snapshot_id:
        argv.append(f"--snapshot={snapshot_id}")
    return argv


def pg_dumpall_roles_argv(pg_dumpall: str, dbname: str) -> list[str]:
    return [pg_dumpall, "--roles-only", "--no-role-passwords", "--no-password", f"--database={dbname}"]
