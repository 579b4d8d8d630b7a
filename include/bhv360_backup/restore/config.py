"""Restore a configuration backup: bucket definitions, settings rows, variables, files.

Settings rows are upserted by primary key into the target database; ``bhv360_`` variables are
set only when asked (they are the live Airflow configuration), and masked values never are;
files go to a restore folder, never over the live paths.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psycopg import sql

from bhv360_backup.errors import BackupError
from bhv360_backup.postgres.client import PgTarget
from bhv360_backup.repository.config import MASK
from bhv360_backup.restore.storage import StorageSink

PRIMARY_KEY_SQL = """
SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)
"""


def upsert_rows(target: PgTarget, tables: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Insert or update every row by primary key; a table without one, or missing, is an error."""
    counts = {}
    with target.connect() as connection, connection.transaction():
        for name, rows in sorted(tables.items()):
            if connection.execute("SELECT to_regclass(%s)", [name]).fetchone()[0] is None:
                raise BackupError(f"settings table {name} does not exist in {target.describe()}")
            keys = [row[0] for row in connection.execute(PRIMARY_KEY_SQL, [name]).fetchall()]
            if not keys:
                raise BackupError(f"settings table {name} has no primary key to upsert by")
            schema, _, table = name.rpartition(".")
            identifier = sql.Identifier(schema or "public", table)
            for row in rows:
                columns = list(row)
                updates = [c for c in columns if c not in keys]
                statement = sql.SQL(
                    "INSERT INTO {t} ({cols}) SELECT {cols} FROM jsonb_populate_record(NULL::{t}, %s) "
                    "ON CONFLICT ({keys}) DO {action}"
                ).format(
                    t=identifier,
                    cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
                    keys=sql.SQL(", ").join(map(sql.Identifier, keys)),
                    action=sql.SQL("UPDATE SET {}").format(sql.SQL(", ").join(
                        sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in updates))
                    if updates else sql.SQL("NOTHING"),
                )
                connection.execute(statement, [json.dumps(row)])
            counts[name] = len(rows)
    return counts


def write_files(files: list[dict[str, Any]], folder: Path) -> list[str]:
    """Write the backed-up files under ``folder`` (their absolute paths made relative), with their modes."""
    written = []
    for item in files:
        relative = Path(item["path"].lstrip("/"))
        if ".." in relative.parts:
            raise BackupError(f"config file path {item['path']!r} is not safe")
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = base64.b64decode(item["content"]) if item["encoding"] == "base64" else item["content"].encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, int(item["mode"], 8) & 0o777)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        written.append(str(path))
    return written


def restore_config(
    document: dict[str, Any],
    *,
    database: PgTarget | None,
    sink: StorageSink | None,
    files_folder: Path,
    set_variable: Callable[[str, str], None] | None,
) -> dict[str, Any]:
    """Apply a config document; returns what was done and what the operator must do by hand."""
    report: dict[str, Any] = {}
    if sink is not None:
        sink.prepare(document["storage_buckets"]["buckets"])
        report["buckets"] = [b["id"] for b in document["storage_buckets"]["buckets"]]
    tables = document["settings_tables"]["tables"]
    if tables and database is not None:
        report["settings_rows"] = upsert_rows(database, tables)
    variables = document["airflow_variables"]["variables"]
    report["masked_variables_to_set_by_hand"] = sorted(n for n, v in variables.items() if v == MASK)
    settable = {n: v for n, v in variables.items() if v != MASK}
    if set_variable is not None:
        for name, value in sorted(settable.items()):
            set_variable(name, value)
        report["variables_set"] = sorted(settable)
    else:
        report["variables_not_set"] = sorted(settable)
    report["files"] = write_files(document["files"]["files"], files_folder)
    return report
