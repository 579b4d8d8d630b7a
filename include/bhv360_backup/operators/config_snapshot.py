"""Operator for the configuration backup."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from bhv360_backup.alerts import PREFIX, lines_alert, notify_ops
from bhv360_backup.joblog import JobRecord
from bhv360_backup.operators.base import BaseBackupOperator
from bhv360_backup.producers import config
from bhv360_backup.repository.catalog import list_backups, read_manifest
from bhv360_backup.repository.config import (
    CONFIG_ARTIFACT,
    PROJECT_SECRETS_ARTIFACT,
    changed_fields,
    encode,
    project_fields,
    watched,
)
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import Manifest
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.runtime import (
    bhv360_variables,
    has_connection,
    looks_secret,
    management_api,
    pg_target,
    storage_source,
)
from bhv360_backup.settings import DB_CONN_ID, MANAGEMENT_CONN_ID, Settings


class ConfigSnapshotOperator(BaseBackupOperator):
    """
    Write the system's configuration as one deterministic ``config.json`` into every backup location,
    with the Supabase project's configuration and Edge Functions where ``management_conn_id`` exists;
    say what changed in the project since the previous config backup.

    :param postgres_conn_id: connection of the database whose configuration is read
    :param management_conn_id: connection of the Supabase Management API (optional: without it the
        project section is left out, and the job log says so)
    :param aws_conn_id: connection of the S3 location
    """

    template_fields: Sequence[str] = ("postgres_conn_id", "management_conn_id", "aws_conn_id")
    ui_color = "#fcf3cf"
    backup_type = BackupType.CONFIG

    def __init__(self, *, postgres_conn_id: str = DB_CONN_ID, management_conn_id: str = MANAGEMENT_CONN_ID,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.postgres_conn_id = postgres_conn_id
        self.management_conn_id = management_conn_id

    def write_backup(self, writer: BackupWriter, settings: Settings, context: Context, record: JobRecord) -> Manifest:
        reused = writer.resume()
        if reused is not None:
            return reused
        previous = _previous_fields(writer)
        project = self._project(writer)
        document = config.config_document(
            database=pg_target(self.postgres_conn_id),
            storage=storage_source(settings),
            tables=settings.config_tables,
            variables=bhv360_variables(),
            is_secret=looks_secret,
            paths=settings.config_paths,
        )
        project_details: dict[str, Any] = {"project": "not configured: connection "
                                                      f"{self.management_conn_id} does not exist"}
        if project is not None:
            document["project"] = project.section
            if project.secrets:
                writer.add(PROJECT_SECRETS_ARTIFACT, [encode(project.secrets)])
            fields = project_fields({k: v for k, v in project.section.items() if k != "source"})
            changes = changed_fields(previous, fields) if previous is not None else {}
            project_details = {"project_fields": fields, "project_changes": changes,
                               "manual_steps": project.manual_steps}
            record.extra = {"project_changes": changes, "manual_steps": len(project.manual_steps)}
            for field, change in changes.items():
                self.log.info("project setting %s: %s since the previous config backup", field, change)
            alarming = watched(changes, settings.config_watch)
            if alarming:
                notify_ops(context, lines_alert(f"{PREFIX} project settings changed: {', '.join(alarming)[:120]}",
                                                [f"{field}: {changes[field]}" for field in alarming]))
        writer.add_bytes(CONFIG_ARTIFACT, encode(document))
        writer.verify()
        return writer.publish(
            dag_id=self.dag_id,
            run_id=context["run_id"],
            details={
                "sections": {name: section["source"] for name, section in document.items() if isinstance(section, dict)},
                "masked_variables": document["airflow_variables"]["masked"],
                **project_details,
            },
        )

    def _project(self, writer: BackupWriter) -> config.ProjectConfig | None:
        if not has_connection(self.management_conn_id):
            self.log.warning("the Supabase project's own configuration is not backed up: connection %s is not "
                             "configured (see the README, Connections)", self.management_conn_id)
            return None
        with management_api(self.management_conn_id) as api:
            return config.project_config(api, lambda path, chunks: writer.add(path, chunks),
                                         keep_secrets=writer.encrypted)


def _previous_fields(writer: BackupWriter) -> dict[str, str] | None:
    """The project fields of the newest config backup before this one, where one recorded them."""
    for location in writer.live:
        ids = [backup_id for backup_id in list_backups(location, BackupType.CONFIG) if backup_id < writer.backup_id]
        if ids:
            return read_manifest(location, BackupType.CONFIG, ids[-1]).details.get("project_fields")
    return None
