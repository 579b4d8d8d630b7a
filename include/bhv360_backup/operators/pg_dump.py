"""Operator for the database backup."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from bhv360_backup import joblog
from bhv360_backup.backup import BackupWriter
from bhv360_backup.database import dump_database
from bhv360_backup.layout import BackupType
from bhv360_backup.runtime import load_settings, open_locations, pg_target, run_backup_id
from bhv360_backup.settings import DB_CONN_ID, S3_CONN_ID


class PgDumpOperator(BaseOperator):
    """
    Dump a PostgreSQL database with ``pg_dump --format=custom`` into every backup location.

    The dump streams once through sha256 into the local folder and S3 at the same time, is
    read back and checked with ``pg_restore --list``, and is published by its manifest, last.

    :param postgres_conn_id: connection of the database to back up
    :param aws_conn_id: connection of the S3 location
    """

    template_fields: Sequence[str] = ("postgres_conn_id", "aws_conn_id")
    ui_color = "#d6eaf8"

    def __init__(self, *, postgres_conn_id: str = DB_CONN_ID, aws_conn_id: str = S3_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.postgres_conn_id = postgres_conn_id
        self.aws_conn_id = aws_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        settings = load_settings()
        backup_id = run_backup_id(context)
        record = joblog.JobRecord(self.dag_id, context["run_id"], BackupType.DATABASE.value, backup_id)
        with joblog.job(settings.log_dir, record):
            target = pg_target(self.postgres_conn_id)
            writer = BackupWriter(open_locations(settings, self.aws_conn_id), BackupType.DATABASE, backup_id)
            manifest = dump_database(
                target, writer, pg_bin_dir=settings.pg_bin_dir, dag_id=self.dag_id, run_id=context["run_id"]
            )
            record.bytes = manifest.size
            record.locations = [location.name for location in writer.live]
            summary = backup_summary(manifest, writer)
            self.log.info("database backup %s: %s", backup_id, summary)
            writer.raise_for_failures()
        return summary


def backup_summary(manifest: Any, writer: BackupWriter) -> dict[str, Any]:
    """The XCom a backup task returns: ids, sizes and checksums, never a secret."""
    return {
        "backup_id": manifest.backup_id,
        "type": manifest.type.value,
        "size": manifest.size,
        "artifacts": [{"path": a.path, "size": a.size, "sha256": a.sha256} for a in manifest.artifacts],
        "locations": [location.describe() for location in writer.live],
    }
