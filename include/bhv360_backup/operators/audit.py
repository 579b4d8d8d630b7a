"""Operator of the quarterly audit report."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from airflow.sdk import Context

from bhv360_backup import audit, joblog
from bhv360_backup.alerts import email_report
from bhv360_backup.operators.base import LocationsOperator
from bhv360_backup.repository.manifest import utc_now
from bhv360_backup.repository.retention import RetentionPolicy
from bhv360_backup.runtime import load_settings, open_locations
from bhv360_backup.settings import schedule_timezone


class BackupAuditOperator(LocationsOperator):
    """
    Write the audit report of the quarter that just ended to ``audit/<year>-Q<n>/report.html`` in
    both locations and e-mail it to ``bhv360_alert_emails``.

    :param aws_conn_id: connection of the S3 location
    """

    ui_color = "#ebdef0"

    def execute(self, context: Context) -> dict[str, Any]:
        settings = load_settings()
        quarter = audit.Quarter.before(context["dag_run"].run_after)
        locations = open_locations(settings, self.aws_conn_id)
        policy = RetentionPolicy(days=settings.retention_days, keep_min=settings.keep_min)
        report, findings = audit.build_report(joblog.read(settings.log_dir), locations, quarter, policy, utc_now(),
                                              ZoneInfo(schedule_timezone()))
        key = f"audit/{quarter.name}/report.html"
        for location in locations:
            location.put_bytes(key, report.encode())
        email_report(context, f"[bhv360-backup] audit report {quarter.name}: {len(findings)} finding(s)", report)
        self.log.info("audit %s: %d findings, saved as %s in %s", quarter.name, len(findings), key,
                      ", ".join(location.describe() for location in locations))
        return {"quarter": quarter.name, "findings": findings, "key": key}
