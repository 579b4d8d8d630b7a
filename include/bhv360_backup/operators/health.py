"""Operator of the daily health check."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Context

from bhv360_backup import health, joblog
from bhv360_backup.alerts import notify_ops
from bhv360_backup.operators.base import LocationsOperator
from bhv360_backup.repository.manifest import utc_now
from bhv360_backup.runtime import job_log_dir, load_settings, open_locations


class BackupHealthOperator(LocationsOperator):
    """
    Check every backup type in every location: the newest is young enough, every kept backup and
    blob is read back in full at least once every 7 days (the newest on every run), both locations
    hold the same backups, and the newest drill passed. What was read back goes to the job log.
    Fails with the findings table (which the failure alert carries); logs the table when all is well,
    and posts it to e-mail and ``#ops`` when the variable ``bhv360_health_green_summary`` is true.

    :param aws_conn_id: connection of the S3 location
    """

    ui_color = "#d5f5e3"

    def execute(self, context: Context) -> dict[str, Any]:
        record = joblog.JobRecord(self.dag_id, context["run_id"], "health")
        with joblog.job(job_log_dir(), record):
            settings = load_settings()
            locations = open_locations(settings, self.aws_conn_id)
            report = health.check(locations, utc_now(), settings.log_dir)
            record.locations = [location.name for location in locations]
            record.extra = {"deep_checked": report.deep_checked, "blobs_read": report.blobs_read,
                            "findings": [finding.render() for finding in report.findings[:50]]}
            table = health.render_table(report.rows)
            for line in table:
                self.log.info("%s", line)
            if report.findings:
                raise health.HealthFindings(report.findings, table)
        if settings.health_green_summary:
            notify_ops(context, "[bhv360-backup] all backups healthy", table)
        return {"rows": [row.__dict__ for row in report.rows], "deep_checked": report.deep_checked}
