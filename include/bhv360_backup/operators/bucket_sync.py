"""Operator for the storage backup."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from bhv360_backup import joblog
from bhv360_backup.backup import BackupWriter
from bhv360_backup.layout import BackupType
from bhv360_backup.operators.pg_dump import backup_summary
from bhv360_backup.runtime import load_settings, open_locations, run_backup_id, storage_source
from bhv360_backup.settings import S3_CONN_ID
from bhv360_backup.snapshot import take_snapshot


class BucketSyncOperator(BaseOperator):
    """
    Snapshot every storage bucket (or those in ``bhv360_storage_buckets``) into every backup location.

    Objects are stored once, by sha256, and shared between snapshots; an object whose etag, size
    and updated time match the previous snapshot is not downloaded again.

    :param source: ``supabase``, ``s3:<aws conn id>`` or ``folder:<path>``; default ``bhv360_storage_source``
    :param parallelism: concurrent transfers; default ``bhv360_storage_parallelism``
    :param aws_conn_id: connection of the S3 location
    """

    template_fields: Sequence[str] = ("source", "aws_conn_id")
    ui_color = "#e8daef"

    def __init__(
        self,
        *,
        source: str | None = None,
        parallelism: int | None = None,
        aws_conn_id: str = S3_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.parallelism = parallelism
        self.aws_conn_id = aws_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        settings = load_settings()
        backup_id = run_backup_id(context)
        record = joblog.JobRecord(self.dag_id, context["run_id"], BackupType.STORAGE.value, backup_id)
        with joblog.job(settings.log_dir, record):
            source = storage_source(settings, self.source)
            writer = BackupWriter(open_locations(settings, self.aws_conn_id), BackupType.STORAGE, backup_id)
            manifest, stats = take_snapshot(
                source,
                writer,
                dag_id=self.dag_id,
                run_id=context["run_id"],
                parallelism=self.parallelism or settings.storage_parallelism,
            )
            record.bytes = stats.bytes_transferred
            record.locations = [location.name for location in writer.live]
            record.extra = {"objects": manifest.details.get("objects"), "stats": stats.to_dict()}
            self.log.info(
                "storage snapshot %s from %s: %d objects seen, %d downloaded, %d reused, %d skipped, "
                "%.1f MB transferred at %.1f MB/s",
                backup_id, source.describe(), stats.seen, stats.downloaded, stats.reused, stats.skipped,
                stats.bytes_transferred / 1e6, stats.mb_per_s,
            )
            summary = {**backup_summary(manifest, writer), "stats": stats.to_dict()}
            writer.raise_for_failures()
        return summary
