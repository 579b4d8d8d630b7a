"""Operator of the daily health check."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Context

from bhv360_backup import health
from bhv360_backup.alerts import notify_ops
from bhv360_backup.manifest import utc_now
from bhv360_backup.operators.base import LocationsOperator
from bhv360_backup.runtime import load_settings, open_locations


class BackupHealthOperator(LocationsOperator):
    """
    Check every backup type in every location: the newest is young enough, verifies (sizes always,
    sha256 on a rotating sample), both locations hold the same backups, and the newest drill passed.
    Fails with the findings table (which the failure alert carries); logs the table when all is well,
    and posts it to e-mail and ``#ops`` when the variable ``bhv360_health_green_summary`` is true.

    :param aws_conn_id: connection of the S3 location
    """

    ui_color = "#d5f5e3"

    def execute(self, context: Context) -> dict[str, Any]:
        settings = load_settings()
        rows, findings = health.check(open_locations(settings, self.aws_conn_id), utc_now(), settings.log_dir)
        table = health.render_table(rows)
        for line in table:
            self.log.info("%s", line)
        if findings:
            raise health.HealthFindings(findings, table)
        if settings.health_green_summary:
            notify_ops(context, "[bhv360-backup] all backups healthy", table)
        return {"rows": [row.__dict__ for row in rows]}
