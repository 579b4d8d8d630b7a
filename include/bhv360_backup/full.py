"""The full backup: a database dump, a storage snapshot and a config snapshot taken in one run.

Each component is a regular backup of its type (same backup id as the set). The set itself is
``full/<backup_id>/set.json`` plus its manifest, naming the components with their manifests'
sha256, when each was taken (the database snapshot time, the storage listing's start and end),
and a cross-check of ``storage.objects`` in the dump against the snapshot's index.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from bhv360_backup import retention
from bhv360_backup.backup import BackupWriter
from bhv360_backup.database import read_storage_objects
from bhv360_backup.errors import BackupError, IntegrityError
from bhv360_backup.layout import BackupType
from bhv360_backup.locations.base import Location
from bhv360_backup.manifest import Manifest, parse_iso
from bhv360_backup.snapshot import INDEX_ARTIFACT, read_index

log = logging.getLogger(__name__)

SET_ARTIFACT = "set.json"
COMPONENT_TYPES = (BackupType.DATABASE, BackupType.STORAGE, BackupType.CONFIG)
EXAMPLES = 20


def storage_cross_check(database: set[tuple[str, str]] | None, snapshot: set[tuple[str, str]]) -> dict[str, Any]:
    """Objects ``storage.objects`` lists without a file in the snapshot, and files it does not list."""
    if database is None:
        return {"checked": False, "reason": "the database has no storage.objects table"}
    without_file = sorted(database - snapshot)
    without_row = sorted(snapshot - database)
    return {
        "checked": True,
        "rows_in_database": len(database),
        "objects_in_snapshot": len(snapshot),
        "rows_without_file": len(without_file),
        "files_without_row": len(without_row),
        "examples_rows_without_file": ["/".join(pair) for pair in without_file[:EXAMPLES]],
        "examples_files_without_row": ["/".join(pair) for pair in without_row[:EXAMPLES]],
    }


def describe_set(location: Location, backup_id: str) -> dict[str, Any]:
    """Read this run's three component backups from ``location`` and describe them as one set."""
    manifests: dict[BackupType, Manifest] = {}
    for backup_type in COMPONENT_TYPES:
        try:
            manifests[backup_type] = location.read_manifest(backup_type, backup_id)
        except BackupError as error:
            raise BackupError(f"full backup {backup_id}: the {backup_type.value} component is not complete: {error}") from None
    database, storage = manifests[BackupType.DATABASE], manifests[BackupType.STORAGE]
    if storage.artifact(INDEX_ARTIFACT).encrypted:
        cross_check = {"checked": False, "reason": "the object names are encrypted and the backup worker holds no key"}
    else:
        snapshot_names = {(entry.bucket, entry.path) for entry in read_index(location, storage)}
        cross_check = storage_cross_check(read_storage_objects(location, database), snapshot_names)
    db_time = parse_iso(database.details["snapshot_time"])
    listing_start = parse_iso(storage.details["listing_started_at"])
    listing_end = parse_iso(storage.details["listing_completed_at"])
    return {
        "components": {
            backup_type.value: {
                "backup_id": manifest.backup_id,
                "manifest_sha256": manifest.sha256,
                "completed_at": manifest.to_dict()["completed_at"],
                "size": manifest.size,
            }
            for backup_type, manifest in manifests.items()
        },
        "consistency": {
            "database_snapshot_time": database.details["snapshot_time"],
            "storage_listing_started_at": storage.details["listing_started_at"],
            "storage_listing_completed_at": storage.details["listing_completed_at"],
            "max_seconds_apart": round(max(abs((db_time - listing_start).total_seconds()),
                                           abs((db_time - listing_end).total_seconds())), 1),
            "storage_objects": cross_check,
        },
    }


def write_full_set(writer: BackupWriter, *, dag_id: str, run_id: str) -> Manifest:
    """Publish the set for the writer's backup id; every component must be complete in every location."""
    reused = writer.resume()
    if reused is not None:
        return reused
    descriptions = {location.name: describe_set(location, writer.backup_id) for location in writer.live}
    first = next(iter(descriptions.values()))
    for name, description in descriptions.items():
        if description["components"] != first["components"]:
            raise IntegrityError(f"full backup {writer.backup_id}: {name} holds different component manifests")
    check = first["consistency"]["storage_objects"]
    if check.get("checked"):
        log.info("storage.objects cross-check: %d rows without file, %d files without row",
                 check["rows_without_file"], check["files_without_row"])
    writer.add_bytes(SET_ARTIFACT, (json.dumps(first, sort_keys=True, indent=2) + "\n").encode())
    writer.verify()
    return writer.publish(dag_id=dag_id, run_id=run_id, details=first)


def verify_components(location: Location, manifest: Manifest) -> list[str]:
    """Each component a full set names is in ``location`` with the manifest the set recorded."""
    problems = []
    for type_name, component in manifest.details.get("components", {}).items():
        try:
            found = location.read_manifest(BackupType(type_name), component["backup_id"])
        except BackupError as error:
            problems.append(f"{location.name}: {type_name} component {component['backup_id']}: {error}")
            continue
        if found.sha256 != component["manifest_sha256"]:
            problems.append(f"{location.name}: {type_name} component {component['backup_id']} manifest changed")
    return problems


def protected_components(
    location: Location, policy: retention.RetentionPolicy, now: datetime, backup_type: BackupType
) -> set[str]:
    """Ids of ``backup_type`` backups that a full set retention keeps still names."""
    if backup_type not in COMPONENT_TYPES:
        return set()
    folders = location.scan(BackupType.FULL)
    manifests = {}
    for folder in folders:
        if folder.complete:
            try:
                manifests[folder.backup_id] = location.read_manifest(BackupType.FULL, folder.backup_id)
            except BackupError as error:
                raise BackupError(f"full set {folder.backup_id} unreadable, its components' retention is unknown: {error}") from None
    completed = {backup_id: manifest.completed_at for backup_id, manifest in manifests.items()}
    kept = [d.backup_id for d in retention.plan(folders, completed, policy, now) if not d.delete and d.backup_id in manifests]
    return {
        manifests[backup_id].details["components"][backup_type.value]["backup_id"]
        for backup_id in kept
        if backup_type.value in manifests[backup_id].details.get("components", {})
    }
