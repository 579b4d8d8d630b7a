"""Operator of the incremental backup: one segment of committed changes, then the slot moves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from bhv360_backup.joblog import JobRecord
from bhv360_backup.operators.base import BaseBackupOperator
from bhv360_backup.postgres.positions import lsn_position
from bhv360_backup.producers.incremental import capture_segment
from bhv360_backup.repository.catalog import list_backups, read_manifest
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import Manifest
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.runtime import pg_target, storage_source
from bhv360_backup.settings import DB_CONN_ID, Settings
from bhv360_backup.sources.changes import ChangeSource


def newest_schema(writer: BackupWriter) -> dict[str, str] | None:
    """The schema digests the newest segment recorded, to tell a schema change in this one."""
    for location in writer.live:
        ids = list_backups(location, BackupType.INCREMENTAL)
        if ids:
            return read_manifest(location, BackupType.INCREMENTAL, ids[-1]).details.get("schema")
    return None


def needs_new_chain(summary: dict[str, Any]) -> bool:
    """Whether a database backup must start a new chain now: the capture saw the schema or the access
    model change, or it created the slot (what it captures follows no dump yet)."""
    return bool(summary.get("schema_changed") or summary.get("slot_created"))


class IncrementalCaptureOperator(BaseBackupOperator):
    """
    Write the changes committed in ``postgres_conn_id``'s database since the last capture as one segment
    into every backup location (and the Storage objects those changes name), then move the replication
    slot past them: only once every location holds the verified segment, so a failed run loses nothing.

    :param postgres_conn_id: connection of the database whose changes are captured
    :param slot: the logical replication slot; default ``bhv360_incremental_slot``
    :param aws_conn_id: connection of the S3 location
    """

    template_fields: Sequence[str] = ("postgres_conn_id", "slot", "aws_conn_id")
    ui_color = "#d1f2eb"
    backup_type = BackupType.INCREMENTAL

    def __init__(self, *, postgres_conn_id: str = DB_CONN_ID, slot: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.postgres_conn_id = postgres_conn_id
        self.slot = slot

    def write_backup(self, writer: BackupWriter, settings: Settings, context: Context, record: JobRecord) -> Manifest:
        source = ChangeSource(pg_target(self.postgres_conn_id), self.slot or settings.incremental_slot)
        manifest = capture_segment(source, writer, dag_id=self.dag_id, run_id=context["run_id"],
                                   storage=lambda: storage_source(settings), previous_schema=newest_schema(writer))
        details = manifest.details
        record.extra = {key: details.get(key) for key in ("start_lsn", "end_lsn", "captured_until", "transactions",
                                                          "changes", "first_commit_time", "last_commit_time",
                                                          "not_exact", "schema_changed", "storage",
                                                          "slot_created", "backlog")}
        if not writer.failures:
            confirmed = source.state().confirmed_flush_lsn
            if confirmed is None or lsn_position(details["end_lsn"]) > lsn_position(confirmed):
                source.advance(details["end_lsn"])
            self.log.info("slot %s moved to %s: %d transaction(s), %d change(s) captured up to %s", source.slot,
                          details["end_lsn"], details.get("transactions", 0), details.get("changes", 0),
                          details["captured_until"])
            if details.get("backlog"):
                self.log.warning("a backlog remains (this run took a piece of it up to %s): the next run goes on from "
                                 "there", details["captured_until"])
        else:
            self.log.error("slot %s not moved: the segment is missing in %s; the next run captures these changes "
                           "again", source.slot, ", ".join(writer.failures))
        return manifest
