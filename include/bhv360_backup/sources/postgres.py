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


@dataclass
class DatabaseSnapshot:
    """An exported snapshot held open so ``pg_dump --snapshot`` and the statistics see the same data."""

    snapshot_id: str
    snapshot_time: str
    server_major: int
    server_version: str
    cursor: psycopg.Cursor = field(repr=False)

    def table_stats(self) -> dict[str, dict[str, Any]]:
        """Row counts and small-table checksums in the snapshot; may run while ``pg_dump`` streams."""
        return table_stats(self.cursor)

    def stats_and_access(self) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        """The table statistics, then the access model with its row-visibility probes, in the snapshot."""
        stats = self.table_stats()
        return stats, access.record(self.cursor, {table: entry["rows"] for table, entry in stats.items()})

    def has_storage_objects(self) -> bool:
        """Whether the database has Supabase's ``storage.objects`` table."""
        return self.cursor.execute("SELECT to_regclass('storage.objects')").fetchone()[0] is not None

    def storage_object_names(self) -> Iterator[tuple[str, str]]:
        """``(bucket_id, name)`` of every row of ``storage.objects``, streamed."""
        yield from self.cursor.stream("SELECT bucket_id, name FROM storage.objects ORDER BY 1, 2")


@contextlib.contextmanager
def exported_snapshot(target: PgTarget) -> Iterator[DatabaseSnapshot]:
    """Open a repeatable-read transaction and export its snapshot."""
    with target.connect(autocommit=True) as connection:
        with connection.cursor() as cursor:
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
                yield snapshot
            except BaseException:
                # the server may be gone with the dump's error in flight: keep that error, not the rollback's
                with contextlib.suppress(psycopg.Error):
                    cursor.execute("ROLLBACK")
                raise
            cursor.execute("ROLLBACK")


def pg_dump_argv(pg_dump: str, snapshot_id: str | None) -> list[str]:
    argv = [pg_dump, "--format=custom", "--no-password"]
    if snapshot_id:
        argv.append(f"--snapshot={snapshot_id}")
    return argv


def pg_dumpall_roles_argv(pg_dumpall: str, dbname: str) -> list[str]:
    return [pg_dumpall, "--roles-only", "--no-role-passwords", "--no-password", f"--database={dbname}"]
