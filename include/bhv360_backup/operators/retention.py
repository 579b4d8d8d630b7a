"""Operator that applies the retention policy of one backup type in every location."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from bhv360_backup import joblog
from bhv360_backup.errors import BackupError, first_line
from bhv360_backup.operators.base import LocationsOperator
from bhv360_backup.repository import retention
from bhv360_backup.repository.blobs import collect_garbage
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import utc_now
from bhv360_backup.runtime import job_log_dir, load_settings, open_locations
from bhv360_backup.settings import parse_bool


class RetentionOperator(LocationsOperator):
    """
    Delete the backups of one type that are past ``bhv360_retention_days``, in each location on its own.

    The newest ``bhv360_keep_min`` complete backups stay whatever their age, and so do the
    components of every full set that is kept; unfinished leftovers untouched for 24 hours go.

    :param backup_type: database, config, storage or full
    :param dry_run: only report what would be deleted
    :param aws_conn_id: connection of the S3 location
    """

    template_fields: Sequence[str] = ("dry_run", "aws_conn_id")
    ui_color = "#fdebd0"

    def __init__(
        self, *, backup_type: str, dry_run: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.backup_type = backup_type
        self.dry_run = dry_run

    def execute(self, context: Context) -> dict[str, Any]:
        backup_type = BackupType.parse(self.backup_type)
        record = self.job_record(context, f"retention:{backup_type.value}")
        results: dict[str, Any] = {}
        with joblog.job(job_log_dir(), record):
            settings = load_settings()
            dry_run = parse_bool(self.dry_run, "dry_run")
            policy = retention.RetentionPolicy(days=settings.retention_days, keep_min=settings.keep_min)
            now = utc_now()
            failures = []
            for location in open_locations(settings, self.aws_conn_id):
                try:
                    protected = retention.protected_by_others(location, policy, now, backup_type)
                    report = retention.apply(
                        location, backup_type, policy, now, dry_run=dry_run, protected=protected
                    )
                except Exception as error:  # noqa: BLE001 - each location is kept on its own
                    failures.append(f"{location.name}: {first_line(error)}")
                    continue
                failures += [f"{location.name}: {problem}" for problem in report.errors]
                results[location.name] = {"deleted": report.deleted, "kept": len(report.kept)}
                if backup_type in (BackupType.STORAGE, BackupType.INCREMENTAL):
                    gc = collect_garbage(location, now, dry_run=dry_run)
                    results[location.name]["blobs_removed"] = gc.removed
                    if gc.skipped_reason:
                        self.log.warning("%s: blob garbage collection skipped: %s", location.name, gc.skipped_reason)
                record.locations.append(location.name)
            record.extra = {"dry_run": dry_run, "retention": results}
            if failures:
                raise BackupError(f"retention of {backup_type.value} backups: " + "; ".join(failures))
        return results
