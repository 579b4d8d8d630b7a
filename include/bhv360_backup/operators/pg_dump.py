"""Operator for the database backup."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from bhv360_backup.joblog import JobRecord
from bhv360_backup.operators.base import BaseBackupOperator
from bhv360_backup.producers.database import dump_database
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import Manifest
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.runtime import pg_target
from bhv360_backup.settings import DB_CONN_ID, Settings


class PgDumpOperator(BaseBackupOperator):
    """
    Dump a PostgreSQL database with ``pg_dump --format=custom`` into every backup location.

    The dump streams once through sha256 into the local folder and S3 at the same time, is
    read back and checked with ``pg_restore --list``, and is published by its manifest, last.

    :param postgres_conn_id: connection of the database to back up
    :param aws_conn_id: connection of the S3 location
    """

    template_fields: Sequence[str] = ("postgres_conn_id", "aws_conn_id")
    ui_color = "#d6eaf8"
    backup_type = BackupType.DATABASE

    def __init__(self, *, postgres_conn_id: str = DB_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.postgres_conn_id = postgres_conn_id

    def write_backup(self, writer: BackupWriter, settings: Settings, context: Context, record: JobRecord) -> Manifest:
        return dump_database(
            pg_target(self.postgres_conn_id),
            writer,
            pg_bin_dir=settings.pg_bin_dir,
            dag_id=self.dag_id,
            run_id=context["run_id"],
            slot=settings.incremental_slot if settings.incremental else None,
            compression=settings.dump_compression,
        )
