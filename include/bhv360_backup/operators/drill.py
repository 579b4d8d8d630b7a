"""Operator of the weekly restore drill."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Context

from bhv360_backup import joblog
from bhv360_backup.drill import DEFAULT_SAMPLE, run_drill
from bhv360_backup.operators.base import LocationsOperator
from bhv360_backup.operators.restore import restore_folder
from bhv360_backup.runtime import (
    age_identities,
    has_connection,
    job_log_dir,
    load_settings,
    management_api,
    open_locations,
    pg_target,
)
from bhv360_backup.settings import MANAGEMENT_CONN_ID, RESTORE_DB_CONN_ID


class RestoreDrillOperator(LocationsOperator):
    """
    Restore the newest database backup into a scratch database on the server of
    ``restore_conn_id`` (created and dropped by the drill) and a sample of the newest storage
    snapshot into a scratch folder, check both against the backups, and record the result.

    :param restore_conn_id: connection whose server gets the scratch database
    :param sample_size: objects of the storage snapshot to restore
    :param aws_conn_id: connection of the S3 location
    """

    template_fields = ("restore_conn_id", "aws_conn_id")
    ui_color = "#d4efdf"

    def __init__(
        self, *, restore_conn_id: str = RESTORE_DB_CONN_ID, sample_size: int = DEFAULT_SAMPLE, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.restore_conn_id = restore_conn_id
        self.sample_size = sample_size

    def execute(self, context: Context) -> dict[str, Any]:
        record = self.job_record(context, "drill")
        with joblog.job(job_log_dir(), record):
            settings = load_settings()
            locations = {location.name: location for location in open_locations(settings, self.aws_conn_id)}
            project = management_api(MANAGEMENT_CONN_ID) if has_connection(MANAGEMENT_CONN_ID) else None
            report = run_drill(locations, pg_target(self.restore_conn_id), restore_folder(settings, context["run_id"]),
                               pg_bin_dir=settings.pg_bin_dir, sample_size=self.sample_size,
                               identities=age_identities(), project=project)
            record.backup_id = ",".join(report[part]["backup_id"] for part in ("database", "storage") if part in report)
            record.locations = sorted(locations)
            access = report["database"].get("access", {})
            record.extra = {
                "restore_seconds": report["seconds"],
                "rows": report["database"]["rows"],
                "objects": report.get("storage", {}).get("restored", 0) + report.get("storage", {}).get("identical", 0),
                "access": {key: access.get(key) for key in ("checked", "objects_compared", "probes_compared",
                                                            "differences", "probe_differences")},
                **({"point_in_time": report["point_in_time"]} if "point_in_time" in report else {}),
                **({"project_drift": report["project"]} if report.get("project") else {}),
            }
            if report.get("project") and report["project"]["drift"]:
                self.log.warning("the live project differs from config backup %s: %s", report["project"]["config_backup"],
                                 ", ".join(f"{field} ({change})" for field, change in report["project"]["drift"].items()))
        self.log.info("restore drill passed: %s", report)
        return report
