"""Operator of the quarterly audit report."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from airflow.sdk import Context

from bhv360_backup import audit, joblog
from bhv360_backup.alerts import PREFIX, email_report
from bhv360_backup.operators.base import LocationsOperator
from bhv360_backup.repository.manifest import utc_now
from bhv360_backup.repository.retention import RetentionPolicy
from bhv360_backup.runtime import load_settings, open_locations
from bhv360_backup.settings import schedule_timezone


class BackupAuditOperator(LocationsOperator):
    """
    Write the audit report of the quarter that just ended as ``audit/<year>-Q<n>/report.html`` and
    ``report.pdf`` with a ``manifest.json`` (their sha256, written last) in both locations (under
    Object Lock when configured), and e-mail it, the PDF attached, to ``bhv360_alert_emails``.

    :param aws_conn_id: connection of the S3 location
    """

    ui_color = "#ebdef0"

    def execute(self, context: Context) -> dict[str, Any]:
        settings = load_settings()
        quarter = audit.Quarter.before(context["dag_run"].run_after)
        locations = open_locations(settings, self.aws_conn_id)
        policy = RetentionPolicy(days=settings.retention_days, keep_min=settings.keep_min)
        generated = utc_now()
        report, findings = audit.build_report(joblog.read(settings.log_dir), locations, quarter, policy, generated,
                                              ZoneInfo(schedule_timezone()))
        files = {"report.html": report.encode(), "report.pdf": audit.render_pdf(report)}
        manifest = audit.store_report(locations, quarter, files, generated, findings)
        with tempfile.TemporaryDirectory() as folder:
            pdf = Path(folder) / f"bhv360-backup-audit-{quarter.name}.pdf"
            pdf.write_bytes(files["report.pdf"])
            text = "\n".join([
                f"BHV360 backup audit report {quarter.name}: {len(findings)} finding(s).",
                f"The report is attached as PDF; it and its manifest (sha256 of every file) are kept in audit/"
                f"{quarter.name}/ of {', '.join(location.describe() for location in locations)}.",
                *(f"- {finding}" for finding in findings),
            ])
            email_report(context, f"{PREFIX} audit report {quarter.name}: {len(findings)} finding(s)", report, text,
                         [str(pdf)])
        self.log.info("audit %s: %d findings, saved in audit/%s/ of %s (report.pdf sha256 %s)", quarter.name,
                      len(findings), quarter.name, ", ".join(location.describe() for location in locations),
                      manifest["artifacts"][1]["sha256"])
        return {"quarter": quarter.name, "findings": findings, "manifest": manifest}
