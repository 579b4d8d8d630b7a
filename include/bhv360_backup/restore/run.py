"""Carry out a validated restore plan: database first, then storage, then configuration."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyrage.x25519 import Identity

from bhv360_backup.config import CONFIG_ARTIFACT
from bhv360_backup.database import DUMP_ARTIFACT, ROLES_ARTIFACT
from bhv360_backup.errors import BackupError
from bhv360_backup.layout import BackupType, artifact_key
from bhv360_backup.locations.base import Location
from bhv360_backup.locations.local import LocalLocation, LocalWriter
from bhv360_backup.manifest import Manifest
from bhv360_backup.postgres.client import PgTarget, find_client
from bhv360_backup.restore.config import restore_config
from bhv360_backup.restore.database import apply_roles, restore_dump
from bhv360_backup.restore.plan import ComponentPlan, RestorePlan
from bhv360_backup.restore.request import RestoreRequest
from bhv360_backup.restore.storage import StorageSink, restore_snapshot
from bhv360_backup.restore.validate import compare_database, database_stats
from bhv360_backup.streams import ProgressLog, copy_stream
from bhv360_backup.verify import plain_chunks, read_back, read_checked_artifact

log = logging.getLogger(__name__)


@dataclass
class RestoreTargets:
    """Where a restore writes; resolved (and checked) by the caller."""

    database: PgTarget | None
    sink: StorageSink | None
    work_dir: Path
    set_variable: Callable[[str, str], None] | None = None
    pg_bin_dir: str = ""
    jobs: int = 2
    parallelism: int = 8
    identities: Sequence[Identity] = ()


def verified_local_file(
    location: Location, manifest: Manifest, path: str, staging: Path, identities: Sequence[Identity] = ()
) -> Path:
    """A local file holding the artifact's plain bytes, checked against its manifest: the local copy
    itself, or a download (decrypted if encrypted) into ``staging``, which the caller removes."""
    key = artifact_key(manifest.type, manifest.backup_id, path)
    artifact = manifest.artifact(path)
    if isinstance(location, LocalLocation) and not artifact.encrypted:
        read_back(location, key, artifact)
        return location.path_of(key)
    target = staging / manifest.backup_id / path
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    result = copy_stream(plain_chunks(location, key, artifact, identities), {"staging": LocalWriter(target)},
                         ProgressLog(f"staging {key}", total=artifact.plain_size or artifact.size))
    if result.failed:
        raise BackupError(f"cannot stage {key} locally: {result.failed['staging']}")
    return target


def _ordered(locations: Mapping[str, Location], first: str) -> list[Location]:
    return [locations[first]] + [location for name, location in locations.items() if name != first]


def restore_database_component(
    component: ComponentPlan, request: RestoreRequest, locations: Mapping[str, Location], targets: RestoreTargets
) -> dict[str, Any]:
    if targets.database is None:
        raise BackupError("no target database for the database restore")
    location = locations[component.location]
    manifest = location.read_manifest(BackupType.DATABASE, component.backup_id)
    major = int(manifest.details["server_version"].split(".")[0])
    staging = targets.work_dir / "staging"
    staging.mkdir(parents=True, exist_ok=True, mode=0o700)
    started = time.monotonic()
    try:
        dump = verified_local_file(location, manifest, DUMP_ARTIFACT, staging, targets.identities)
        roles_errors = None
        if request.restore_roles:
            roles = verified_local_file(location, manifest, ROLES_ARTIFACT, staging, targets.identities)
            roles_errors = apply_roles(roles, targets.database, find_client("psql", major, targets.pg_bin_dir),
                                       supabase=request.supabase_target)
        restore_dump(dump, targets.database, find_client("pg_restore", major, targets.pg_bin_dir), jobs=targets.jobs,
                     no_owner=request.no_owner, supabase=request.supabase_target, work_dir=staging)
    finally:
        shutil.rmtree(staging / manifest.backup_id, ignore_errors=True)  # downloads and decrypted copies
    problems = compare_database(manifest.details, database_stats(targets.database), supabase=request.supabase_target)
    report = {"backup_id": component.backup_id, "target": targets.database.describe(),
              "seconds": round(time.monotonic() - started, 1), "tables": len(manifest.details.get("table_rows", {})),
              "rows": sum(manifest.details.get("table_rows", {}).values()), "roles_errors": roles_errors}
    if problems:
        raise BackupError(f"restored database does not match backup {component.backup_id}: " + "; ".join(problems[:10]))
    return report


def restore_storage_component(
    component: ComponentPlan, locations: Mapping[str, Location], targets: RestoreTargets,
    only: set[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    if targets.sink is None:
        raise BackupError("no storage target for the storage restore")
    ordered = _ordered(locations, component.location)
    manifest = ordered[0].read_manifest(BackupType.STORAGE, component.backup_id)
    started = time.monotonic()
    result = restore_snapshot(manifest, ordered, targets.sink, parallelism=targets.parallelism, only=only,
                              identities=targets.identities)
    report = {"backup_id": component.backup_id, "target": targets.sink.describe(),
              "seconds": round(time.monotonic() - started, 1), **result.to_dict()}
    problems = result.failed + result.refused + result.check_problems
    if problems:
        raise BackupError(f"storage restore of {component.backup_id} incomplete: " + "; ".join(problems[:10]))
    return report


def restore_config_component(
    component: ComponentPlan, locations: Mapping[str, Location], targets: RestoreTargets
) -> dict[str, Any]:
    location = locations[component.location]
    manifest = location.read_manifest(BackupType.CONFIG, component.backup_id)
    document = json.loads(read_checked_artifact(location, manifest, CONFIG_ARTIFACT, targets.identities))
    return {"backup_id": component.backup_id, **restore_config(
        document, database=targets.database, sink=targets.sink,
        files_folder=targets.work_dir / "config-files", set_variable=targets.set_variable)}


def execute_plan(
    plan: RestorePlan, request: RestoreRequest, locations: Mapping[str, Location], targets: RestoreTargets
) -> dict[str, Any]:
    """Restore each component of the plan; the report says what was done, the error what was not."""
    report: dict[str, Any] = {"plan": plan.describe()}
    for name in ("database", "storage", "config"):
        component = plan.component(name)
        if component is None:
            continue
        log.info("restoring %s backup %s from %s", name, component.backup_id, component.location)
        if name == "database":
            report[name] = restore_database_component(component, request, locations, targets)
        elif name == "storage":
            report[name] = restore_storage_component(component, locations, targets)
        else:
            report[name] = restore_config_component(component, locations, targets)
    return report
