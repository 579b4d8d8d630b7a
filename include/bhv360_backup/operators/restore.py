"""Operators of the restore DAG: validate (nothing is written), then restore and check."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from airflow.sdk import Context, Variable
from airflow.sdk.exceptions import AirflowSkipException

from bhv360_backup import joblog
from bhv360_backup.alerts import PREFIX, lines_alert, notify_ops
from bhv360_backup.errors import BackupError, ConfigurationError
from bhv360_backup.operators.base import LocationsOperator
from bhv360_backup.postgres.client import PgTarget, find_client, server_major
from bhv360_backup.restore.plan import RestorePlan, build_plan, resolve
from bhv360_backup.restore.request import RestoreRequest, parse_request
from bhv360_backup.restore.run import RestoreMismatch, RestoreTargets, check_targets, execute_plan
from bhv360_backup.restore.storage import FolderSink, StorageSink, SupabaseSink, folder_target
from bhv360_backup.runtime import (
    age_identities,
    airflow_folders,
    job_log_dir,
    load_settings,
    management_api,
    open_locations,
    pg_target,
    same_project,
    supabase_project,
)
from bhv360_backup.settings import DB_CONN_ID, MANAGEMENT_CONN_ID, SUPABASE_CONN_ID, Settings
from bhv360_backup.sources.storage import SupabaseStorageSource
from bhv360_backup.sources.supabase_management import ManagementAPI

REQUEST_FIELDS = ("type", "paths", "target_conn_id", "confirm_overwrite", "dry_run", "supabase_target",
                  "storage_target", "restore_roles", "no_owner", "point_in_time", "accept_earlier_point", "owner_map",
                  "target_project_conn_id")


def restore_folder(settings: Settings, run_id: str) -> Path:
    return settings.backup_root / "restore" / re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)


def _same_database(a: PgTarget, b: PgTarget) -> bool:
    return (a.host, a.port, a.dbname) == (b.host, b.port, b.dbname)


def database_target(request: RestoreRequest) -> PgTarget:
    """The target database, refusing production (``bhv360_db``) without ``confirm_overwrite``."""
    target = pg_target(request.target_conn_id)
    production = request.target_conn_id == DB_CONN_ID
    if not production:
        try:
            production = _same_database(target, pg_target(DB_CONN_ID))
        except ConfigurationError:
            production = False
    if production and not request.confirm_overwrite:
        raise BackupError(
            f"target '{request.target_conn_id}' is the production database bhv360_db: set confirm_overwrite to true "
            "to restore over it"
        )
    with target.connect():
        pass
    return target


def storage_sink(request: RestoreRequest, settings: Settings, run_id: str) -> StorageSink:
    spec = request.storage_target
    if spec == "folder":
        return FolderSink(restore_folder(settings, run_id) / "storage")
    if spec.startswith("folder:"):
        protected = [settings.backup_root, settings.log_dir, *airflow_folders()]
        return FolderSink(folder_target(spec[len("folder:"):], settings.restore_folder_root, protected))
    conn_id = spec.partition(":")[2] or SUPABASE_CONN_ID
    url, key = supabase_project(conn_id)
    production = conn_id == SUPABASE_CONN_ID
    if not production:
        try:
            production = same_project(url, supabase_project(SUPABASE_CONN_ID)[0])
        except ConfigurationError:
            production = False
    if production and not request.confirm_overwrite:
        raise BackupError(f"storage_target '{spec}' is the production project ({SUPABASE_CONN_ID}, {url}): set "
                          "confirm_overwrite to true, or name another project as 'supabase:<conn id>'")
    return SupabaseSink(url, key, SupabaseStorageSource(url, key))


def resolve_targets(request: RestoreRequest, plan_components: set[str], settings: Settings, run_id: str) -> RestoreTargets:
    needs_database = bool({"database", "config"} & plan_components)
    needs_sink = "storage" in plan_components or (
        "config" in plan_components and request.storage_target.startswith("supabase"))
    return RestoreTargets(
        database=database_target(request) if needs_database else None,
        sink=storage_sink(request, settings, run_id) if needs_sink else None,
        work_dir=restore_folder(settings, run_id),
        set_variable=(lambda name, value: Variable.set(name, value)) if request.confirm_overwrite else None,
        pg_bin_dir=settings.pg_bin_dir,
        parallelism=settings.storage_parallelism,
        identities=age_identities(),
        project=project_target(request) if "config" in plan_components else None,
    )


def project_target(request: RestoreRequest) -> ManagementAPI | None:
    """The project a config restore applies the project configuration to; the source project (same ref as
    ``bhv360_supabase_management``) only with ``confirm_overwrite``."""
    if not request.target_project_conn_id:
        return None
    api = management_api(request.target_project_conn_id)
    try:
        source_ref = management_api(MANAGEMENT_CONN_ID).project_ref
    except ConfigurationError:
        source_ref = None
    if api.project_ref == source_ref and not request.confirm_overwrite:
        api.close()
        raise BackupError(f"target_project_conn_id '{request.target_project_conn_id}' is the source project "
                          f"{source_ref}: set confirm_overwrite to true to apply a backup over it")
    return api


def request_from_context(context: Context, settings: Settings) -> RestoreRequest:
    params = context["params"]
    body = {name: params[name] for name in REQUEST_FIELDS if name in params and params[name] is not None}
    return parse_request(body, backup_root=str(settings.backup_root), bucket=settings.s3_bucket)


class RestoreValidateOperator(LocationsOperator):
    """
    Check a restore request before anything is written: its paths, the backups they resolve to
    (every artifact's size and sha256, in the local copy or else the S3 copy), and the targets.
    Returns the plan; with ``dry_run`` the plan is all that happens.

    :param aws_conn_id: connection of the S3 location
    """

    ui_color = "#fadbd8"

    def execute(self, context: Context) -> dict[str, Any]:
        record = self.job_record(context, f"restore-validation:{context['params'].get('type')}")
        with joblog.job(job_log_dir(), record):
            return self._validate(context, record)

    def _validate(self, context: Context, record: joblog.JobRecord) -> dict[str, Any]:
        settings = load_settings()
        request = request_from_context(context, settings)
        locations = open_locations(settings, self.aws_conn_id)
        targets = resolve_targets(request, set(request.paths), settings, context["run_id"])
        resolution = resolve(request, locations)
        record.backup_id = resolution.backup_ids
        major = server_major(targets.database) if targets.database else None
        pg_restore = find_client("pg_restore", major, settings.pg_bin_dir) if major else None
        described = {"database": targets.database.describe() if targets.database else "-",
                     "storage": targets.sink.describe() if targets.sink else "-",
                     "config": "settings rows into the target database, files into " + str(targets.work_dir)}
        plan = build_plan(request, locations, described, pg_restore, targets.identities, resolution)
        check_targets(plan, request, {location.name: location for location in locations}, targets)
        record.extra = {"plan": plan.describe()}
        for line in record.extra["plan"]:
            self.log.info("%s", line)
        if request.dry_run:
            self.log.info("dry run: validation passed, nothing will be restored")
        return {"request": request.to_dict(), "plan": plan.to_dict()}


class RestoreOperator(LocationsOperator):
    """
    Restore what the validation task planned, then check the targets against the backup, record
    the outcome in the job log and tell the operations team.

    :param aws_conn_id: connection of the S3 location
    """

    ui_color = "#f5b7b1"

    def execute(self, context: Context) -> dict[str, Any]:
        validated = context["ti"].xcom_pull(task_ids="validate")
        plan = RestorePlan.from_dict(validated["plan"])
        if validated["request"].get("dry_run"):
            raise AirflowSkipException("dry run: validation only, nothing restored")
        record = self.job_record(context, f"restore:{plan.type}",
                                  ",".join(c.backup_id for c in plan.components))
        with joblog.job(job_log_dir(), record):
            settings = load_settings()
            request = parse_request(validated["request"], backup_root=str(settings.backup_root),
                                    bucket=settings.s3_bucket)
            locations = {location.name: location for location in open_locations(settings, self.aws_conn_id)}
            targets = resolve_targets(request, {c.component for c in plan.components}, settings, context["run_id"])
            record.locations = sorted({c.location for c in plan.components})
            record.bytes = sum(c.size for c in plan.components)
            try:
                report = execute_plan(plan, request, locations, targets)
            except RestoreMismatch as mismatch:  # the evidence of what differs goes to the job log too
                record.extra = {"report": {k: v for k, v in mismatch.report.items() if k != "plan"}}
                raise
            record.extra = {"report": {k: v for k, v in report.items() if k != "plan"}}
        notify_ops(context, lines_alert(f"{PREFIX} restore of {plan.type} succeeded", plan.describe(),
                                        getattr(context["ti"], "log_url", None)))
        return report
