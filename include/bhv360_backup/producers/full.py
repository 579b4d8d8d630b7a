"""The full backup: a database dump, a storage snapshot and a config snapshot taken in one run.

Each component is a regular backup of its type (same backup id as the set). The set itself is
``full/<backup_id>/set.json`` plus its manifest, naming the components with their manifests'
sha256, when each was taken (the database snapshot time, the storage listing's start and end),
and a cross-check of ``storage.objects`` in the dump against the snapshot's index.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from bhv360_backup.errors import BackupError, IntegrityError
from bhv360_backup.locations.base import Location
from bhv360_backup.repository.catalog import read_manifest
from bhv360_backup.repository.database import read_storage_objects
from bhv360_backup.repository.fullset import COMPONENT_TYPES, SET_ARTIFACT, storage_cross_check
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import Manifest, parse_iso
from bhv360_backup.repository.snapshots import INDEX_ARTIFACT, read_index
from bhv360_backup.repository.writer import BackupWriter

log = logging.getLogger(__name__)

def describe_set(location: Location, backup_id: str) -> dict[str, Any]:
    """Read this run's three component backups from ``location`` and describe them as one set."""
    manifests: dict[BackupType, Manifest] = {}
    for backup_type in COMPONENT_TYPES:
        try:
            manifests[backup_type] = read_manifest(location, backup_type, backup_id)
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
