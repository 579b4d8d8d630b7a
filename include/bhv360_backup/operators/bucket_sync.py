"""Operator for the storage backup."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from bhv360_backup.joblog import JobRecord
from bhv360_backup.operators.base import BaseBackupOperator
from bhv360_backup.producers.storage import take_snapshot
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import Manifest
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.runtime import storage_source
from bhv360_backup.settings import Settings


class BucketSyncOperator(BaseBackupOperator):
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
    backup_type = BackupType.STORAGE

    def __init__(self, *, source: str | None = None, parallelism: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.parallelism = parallelism

    def write_backup(self, writer: BackupWriter, settings: Settings, context: Context, record: JobRecord) -> Manifest:
        source = storage_source(settings, self.source)
        manifest, stats = take_snapshot(
            source,
            writer,
            dag_id=self.dag_id,
            run_id=context["run_id"],
            parallelism=self.parallelism or settings.storage_parallelism,
        )
        record.bytes = stats.bytes_transferred
        record.extra = {"objects": manifest.details.get("objects"), "stats": stats.to_dict()}
        self.log.info(
            "storage snapshot from %s: %d objects seen, %d downloaded, %d reused, %d skipped, "
            "%.1f MB transferred at %.1f MB/s",
            source.describe(), stats.seen, stats.downloaded, stats.reused, stats.skipped,
            stats.bytes_transferred / 1e6, stats.mb_per_s,
        )
        return manifest
