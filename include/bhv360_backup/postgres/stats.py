"""Exact row counts and content checksums of every user table, the same at backup and after restore."""

from __future__ import annotations

from typing import Any

import psycopg

USER_TABLES_SQL = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
  AND n.nspname NOT LIKE 'pg_temp%'
ORDER BY 1, 2
"""


CHECKSUM_MAX_ROWS = 10_000


def table_stats(cursor: psycopg.Cursor) -> dict[str, dict[str, Any]]:
    """Exact row count of every user table, and a content checksum of the small ones, keyed ``schema.table``.

    The checksum is order-independent (md5 over the sorted md5 of each row's text) and is taken
    with ``TimeZone = UTC`` so a restore can compute the same one.
    """
    cursor.execute("SET LOCAL TIME ZONE 'UTC'")
    cursor.execute("SET LOCAL extra_float_digits = 3")
    stats = {}
    for schema, table in cursor.execute(USER_TABLES_SQL).fetchall():
        name = psycopg.sql.SQL("{}.{}").format(psycopg.sql.Identifier(schema), psycopg.sql.Identifier(table))
        rows = cursor.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(name)).fetchone()[0]
        entry: dict[str, Any] = {"rows": rows}
        if rows <= CHECKSUM_MAX_ROWS:
            entry["checksum"] = cursor.execute(
                psycopg.sql.SQL("SELECT coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))), '') "
                                "FROM {} t").format(name)
            ).fetchone()[0]
        stats[f"{schema}.{table}"] = entry
    return stats
