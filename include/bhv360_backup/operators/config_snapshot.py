"""Operator for the configuration backup."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from bhv360_backup.joblog import JobRecord
from bhv360_backup.operators.base import BaseBackupOperator
from bhv360_backup.producers import config
from bhv360_backup.repository.config import CONFIG_ARTIFACT, encode
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import Manifest
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.runtime import bhv360_variables, looks_secret, pg_target, storage_source
from bhv360_backup.settings import DB_CONN_ID, Settings


class ConfigSnapshotOperator(BaseBackupOperator):
    """
    Write the system's configuration as one deterministic ``config.json`` into every backup location.

    :param postgres_conn_id: connection of the database whose configuration is read
    :param aws_conn_id: connection of the S3 location
    """

    template_fields: Sequence[str] = ("postgres_conn_id", "aws_conn_id")
    ui_color = "#fcf3cf"
    backup_type = BackupType.CONFIG

    def __init__(self, *, postgres_conn_id: str = DB_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.postgres_conn_id = postgres_conn_id

    def write_backup(self, writer: BackupWriter, settings: Settings, context: Context, record: JobRecord) -> Manifest:
        reused = writer.resume()
        if reused is not None:
            return reused
        document = config.config_document(
            database=pg_target(self.postgres_conn_id),
            storage=storage_source(settings),
            tables=settings.config_tables,
            variables=bhv360_variables(),
            is_secret=looks_secret,
            paths=settings.config_paths,
        )
        writer.add_bytes(CONFIG_ARTIFACT, encode(document))
        writer.verify()
        return writer.publish(
            dag_id=self.dag_id,
            run_id=context["run_id"],
            details={
                "sections": {name: section["source"] for name, section in document.items() if isinstance(section, dict)},
                "masked_variables": document["airflow_variables"]["masked"],
            },
        )
