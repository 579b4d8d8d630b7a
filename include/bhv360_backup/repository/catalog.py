"""The backups a location holds, after restic's repository: a backup is the folder
``<type>/<backup_id>/`` and exists once its manifest does. The location only stores bytes under keys;
this is where a folder of keys becomes a backup, complete or not, and where a backup is removed
(manifest first, so it stops existing before its artifacts go)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bhv360_backup.errors import BackupError
from bhv360_backup.locations.base import BackupLocked, Location
from bhv360_backup.repository.layout import MANIFEST_NAME, BackupType, backup_dir, is_backup_id, manifest_key
from bhv360_backup.repository.manifest import Manifest


@dataclass(frozen=True)
class BackupFolder:
    """One ``<type>/<backup_id>/`` folder as a scan finds it, finished or not."""

    backup_id: str
    complete: bool
    last_modified: datetime


def scan_backups(location: Location, backup_type: BackupType) -> list[BackupFolder]:
    """Every backup folder of a type, complete or not, in id order (a folder with no object in it is none)."""
    found: dict[str, BackupFolder] = {}
    prefix = f"{backup_type.value}/"
    for item in location.iter_objects(prefix):
        backup_id, _, rest = item.key[len(prefix) :].partition("/")
        if not rest or not is_backup_id(backup_id):
            continue
        seen = found.get(backup_id)
        complete = rest == MANIFEST_NAME or (seen is not None and seen.complete)
        newest = max(item.last_modified, seen.last_modified) if seen else item.last_modified
        found[backup_id] = BackupFolder(backup_id, complete, newest)
    return [found[backup_id] for backup_id in sorted(found)]


def list_backups(location: Location, backup_type: BackupType) -> list[str]:
    """Ids of the complete backups (those with a manifest), oldest first."""
    return [folder.backup_id for folder in scan_backups(location, backup_type) if folder.complete]


def has_manifest(location: Location, backup_type: BackupType, backup_id: str) -> bool:
    return location.size_of(manifest_key(backup_type, backup_id)) is not None


def read_manifest(location: Location, backup_type: BackupType, backup_id: str) -> Manifest:
    key = manifest_key(backup_type, backup_id)
    manifest = Manifest.from_bytes(location.read_bytes(key), f"{location.name}:{key}")
    if manifest.backup_id != backup_id or manifest.type != backup_type:
        raise BackupError(
            f"{location.name}:{key} describes {manifest.type.value} backup {manifest.backup_id}, not this folder"
        )
    return manifest


def write_manifest(location: Location, manifest: Manifest) -> None:
    location.put_bytes(manifest_key(manifest.type, manifest.backup_id), manifest.to_bytes())


def delete_backup(location: Location, backup_type: BackupType, backup_id: str) -> None:
    """Remove a backup: its manifest first, then every artifact of its folder. Refused while the
    location keeps the manifest (S3 Object Lock): with versioning a delete would only hide it."""
    folder = backup_dir(backup_type, backup_id)
    manifest = f"{folder}/{MANIFEST_NAME}"
    if until := location.locked_until(manifest):
        raise BackupLocked(f"{location.name}: {folder} is locked until {until.isoformat()} (Object Lock)")
    location.delete(manifest)
    location.delete_prefix(f"{folder}/")
