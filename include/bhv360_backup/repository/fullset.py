"""The full backup format: ``full/<backup_id>/set.json`` names the set's database, storage and config
backups (same backup id) with their manifests' sha256, when each was taken, and the cross-check of
``storage.objects`` rows against the snapshot's files."""

from __future__ import annotations

from typing import Any

from bhv360_backup.errors import BackupError
from bhv360_backup.locations.base import Location
from bhv360_backup.repository.catalog import read_manifest
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import Manifest

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


def verify_components(location: Location, manifest: Manifest) -> list[str]:
    """Each component a full set names is in ``location`` with the manifest the set recorded."""
    problems = []
    for type_name, component in manifest.details.get("components", {}).items():
        try:
            found = read_manifest(location, BackupType(type_name), component["backup_id"])
        except BackupError as error:
            problems.append(f"{location.name}: {type_name} component {component['backup_id']}: {error}")
            continue
        if found.sha256 != component["manifest_sha256"]:
            problems.append(f"{location.name}: {type_name} component {component['backup_id']} manifest changed")
    return problems
