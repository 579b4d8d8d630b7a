"""Operator of the daily health check."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Context

from bhv360_backup import health, joblog
from bhv360_backup.alerts import PREFIX, lines_alert, notify_ops
from bhv360_backup.operators.base import LocationsOperator
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import utc_now
from bhv360_backup.runtime import job_log_dir, load_settings, open_locations, pg_target
from bhv360_backup.settings import DB_CONN_ID
from bhv360_backup.sources.changes import ChangeSource


class BackupHealthOperator(LocationsOperator):
    """
    Check every backup type in every location: the newest is young enough, every kept backup and
    blob is read back in full at least once every 7 days (the newest on every run), both locations
    hold the same backups, and the newest drill passed. What was read back goes to the job log.
    Fails with the findings table (which the failure alert carries); logs the table when all is well,
    and posts it to e-mail and ``#ops`` when the variable ``bhv360_health_green_summary`` is true.

    With incremental backups on, also: the newest segment is younger than three capture intervals, and
    the capture slot in ``postgres_conn_id``'s database exists and holds back less WAL than
    ``bhv360_incremental_max_retained_mb``.

    :param postgres_conn_id: connection of the database whose capture slot is checked
    :param aws_conn_id: connection of the S3 location
    """

    template_fields = ("postgres_conn_id", "aws_conn_id")
    ui_color = "#d5f5e3"

    def __init__(self, *, postgres_conn_id: str = DB_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.postgres_conn_id = postgres_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        record = self.job_record(context, "health")
        with joblog.job(job_log_dir(), record):
            settings = load_settings()
            locations = open_locations(settings, self.aws_conn_id)
            interval = timedelta(minutes=settings.incremental_interval_minutes)
            report = health.check(locations, utc_now(), settings.log_dir,
                                  max_age={BackupType.INCREMENTAL: 3 * interval if settings.incremental else None})
            if settings.incremental:
                source = ChangeSource(pg_target(self.postgres_conn_id), settings.incremental_slot)
                health.check_slot(report, source.state(), settings.incremental_max_retained_mb * 1_000_000, interval)
            record.locations = [location.name for location in locations]
            record.extra = {"deep_checked": report.deep_checked, "blobs_read": report.blobs_read, "slot": report.slot,
                            "findings": [finding.render() for finding in report.findings[:50]]}
            table = health.render_table(report.rows)
            for line in table:
                self.log.info("%s", line)
            if report.findings:
                raise health.HealthFindings(report.findings, table)
        if settings.health_green_summary:
            notify_ops(context, lines_alert(f"{PREFIX} all backups healthy", table))
        return {"rows": [row.__dict__ for row in report.rows], "deep_checked": report.deep_checked}
