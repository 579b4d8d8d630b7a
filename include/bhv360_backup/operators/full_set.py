"""Operator that publishes a full backup set once its three components are complete."""

from __future__ import annotations

from collections.abc import Sequence

from airflow.sdk import Context

from bhv360_backup.joblog import JobRecord
from bhv360_backup.operators.base import BaseBackupOperator
from bhv360_backup.producers.full import write_full_set
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import Manifest
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.settings import Settings


class FullBackupSetOperator(BaseBackupOperator):
    """
    Write ``full/<backup_id>/`` naming this run's database, storage and config backups, last.

    Runs after the three component tasks; a full backup exists only when all three are complete
    in every location. Records how far apart the database snapshot and the storage listing were,
    and cross-checks ``storage.objects`` in the dump against the snapshot's index.

    :param aws_conn_id: connection of the S3 location
    """

    template_fields: Sequence[str] = ("aws_conn_id",)
    ui_color = "#d0ece7"
    backup_type = BackupType.FULL

    def write_backup(self, writer: BackupWriter, settings: Settings, context: Context, record: JobRecord) -> Manifest:
        manifest = write_full_set(writer, dag_id=self.dag_id, run_id=context["run_id"])
        record.extra = {"components": manifest.details["components"], "consistency": manifest.details["consistency"]}
        return manifest
