"""Checks after a restore: the target holds what the backup recorded at backup time."""

from __future__ import annotations

from typing import Any

from bhv360_backup.postgres.client import PgTarget
from bhv360_backup.postgres.stats import table_stats
from bhv360_backup.postgres.supabase import (
    SUPABASE_DATA_SCHEMAS,
    SUPABASE_INTERNAL_SCHEMAS,
    SUPABASE_SKIPPED_TABLES,
)


def database_stats(target: PgTarget) -> dict[str, dict[str, Any]]:
    """Row counts and small-table checksums of every user table in ``target``."""
    with target.connect() as connection, connection.transaction():
        return table_stats(connection.cursor())


def compare_database(details: dict[str, Any], actual: dict[str, dict[str, Any]], *, supabase: bool) -> list[str]:
    """Differences between the statistics a database backup recorded and the restored target."""
    problems = []
    checksums = details.get("table_checksums", {})
    for table, rows in sorted(details.get("table_rows", {}).items()):
        schema = table.split(".", 1)[0]
        if supabase and (table in SUPABASE_SKIPPED_TABLES
                         or (schema in SUPABASE_INTERNAL_SCHEMAS and schema not in SUPABASE_DATA_SCHEMAS)):
            continue
        found = actual.get(table)
        if found is None:
            problems.append(f"table {table} is missing")
        elif found["rows"] != rows:
            problems.append(f"table {table} has {found['rows']} rows, the backup {rows}")
        elif table in checksums and found.get("checksum") != checksums[table]:
            problems.append(f"table {table} content differs from the backup (checksum)")
    return problems
