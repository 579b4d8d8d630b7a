"""Operator that checks a published backup in every location."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from bhv360_backup.errors import BackupError, IntegrityError
from bhv360_backup.operators.base import LocationsOperator
from bhv360_backup.repository.blobs import verify_snapshot_blobs
from bhv360_backup.repository.catalog import read_manifest
from bhv360_backup.repository.fullset import verify_components
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.verify import verify_backup
from bhv360_backup.runtime import load_settings, open_locations, run_backup_id


class VerifyBackupOperator(LocationsOperator):
    """
    Check that a backup is published in every location, with the same manifest, and that every
    artifact it names is there with its size (and, with ``deep``, its sha256).

    :param backup_type: database, config, storage or full
    :param backup_id: the backup to check; by default the one this DAG run made
    :param deep: also read every artifact back and compare its sha256
    :param aws_conn_id: connection of the S3 location
    """

    template_fields: Sequence[str] = ("backup_id", "aws_conn_id")
    ui_color = "#d5f5e3"

    def __init__(
        self,
        *,
        backup_type: str,
        backup_id: str | None = None,
        deep: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.backup_type = backup_type
        self.backup_id = backup_id
        self.deep = deep

    def execute(self, context: Context) -> dict[str, Any]:
        backup_type = BackupType.parse(self.backup_type)
        backup_id = self.backup_id or run_backup_id(context)
        locations = open_locations(load_settings(), self.aws_conn_id)
        problems, manifests = [], {}
        for location in locations:
            try:
                manifests[location.name] = read_manifest(location, backup_type, backup_id)
            except BackupError as error:
                problems.append(f"{location.name}: no readable manifest ({error})")
                continue
            problems += [finding.problem for finding in verify_backup(location, manifests[location.name], deep=self.deep)]
            if backup_type == BackupType.STORAGE:
                problems += verify_snapshot_blobs(location, manifests[location.name])
            if backup_type == BackupType.FULL:
                problems += verify_components(location, manifests[location.name])
        if len({manifest.sha256 for manifest in manifests.values()}) > 1:
            problems.append("the locations hold different manifests for this backup")
        if problems:
            raise IntegrityError(f"{backup_type.value} backup {backup_id}: " + "; ".join(problems))
        self.log.info("%s backup %s verified in %s", backup_type.value, backup_id, ", ".join(manifests))
        return {"backup_id": backup_id, "type": backup_type.value, "verified_in": sorted(manifests)}
