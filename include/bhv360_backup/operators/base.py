"""What every backup operator does around its own work: settings, backup id, job log, locations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from bhv360_backup import joblog
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import Manifest
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.runtime import job_log_dir, load_settings, open_locations, run_backup_id
from bhv360_backup.settings import S3_CONN_ID, Settings


def backup_summary(manifest: Manifest, writer: BackupWriter) -> dict[str, Any]:
    """The XCom a backup task returns: ids, sizes and checksums, never a secret."""
    return {
        "backup_id": manifest.backup_id,
        "type": manifest.type.value,
        "size": manifest.size,
        "artifacts": [{"path": a.path, "size": a.size, "sha256": a.sha256} for a in manifest.artifacts],
        "locations": [location.describe() for location in writer.live],
    }


class LocationsOperator(BaseOperator):
    """
    An operator that works on the backup locations: the local root and the bucket of ``aws_conn_id``.

    :param aws_conn_id: connection of the S3 location
    """

    template_fields: Sequence[str] = ("aws_conn_id",)

    def __init__(self, *, aws_conn_id: str = S3_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id

    def job_record(self, context: Context, job_type: str, backup_id: str | None = None) -> joblog.JobRecord:
        """This task's line of the job log, linked to its run and log."""
        return joblog.JobRecord(self.dag_id, context["run_id"], job_type, backup_id, task_id=self.task_id)


class BaseBackupOperator(LocationsOperator):
    """
    Make one backup of ``backup_type`` for this DAG run in every location, logged in the job log.

    The task fails when any location lacks the finished backup, after the others have it.

    :param aws_conn_id: connection of the S3 location
    """

    backup_type: BackupType

    def write_backup(
        self, writer: BackupWriter, settings: Settings, context: Context, record: joblog.JobRecord
    ) -> Manifest:
        """Produce the backup through ``writer`` and return its published manifest."""
        raise NotImplementedError

    def execute(self, context: Context) -> dict[str, Any]:
        backup_id = run_backup_id(context)
        record = self.job_record(context, self.backup_type.value, backup_id)
        with joblog.job(job_log_dir(), record):
            settings = load_settings()
            writer = BackupWriter(open_locations(settings, self.aws_conn_id), self.backup_type, backup_id,
                                  settings.age_recipients)
            try:
                manifest = self.write_backup(writer, settings, context, record)
            finally:
                if writer.failures:  # where the backup is missing, for the job log and the alert
                    record.extra["failed_locations"] = dict(writer.failures)
            record.bytes = record.bytes or manifest.size
            record.locations = [location.name for location in writer.live]
            summary = {**backup_summary(manifest, writer), **record.extra}
            self.log.info("%s backup %s: %s", self.backup_type.value, backup_id, summary)
            writer.raise_for_failures()
        return summary
