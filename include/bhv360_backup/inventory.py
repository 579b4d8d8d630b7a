"""The inventory: every complete backup, in which locations, and whether each copy verifies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from bhv360_backup.errors import BackupError
from bhv360_backup.locations.base import Location
from bhv360_backup.repository.catalog import list_backups, read_manifest
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import Manifest, iso
from bhv360_backup.repository.verify import verify_backup


@dataclass
class InventoryEntry:
    type: str
    backup_id: str
    completed_at: str
    size: int
    artifacts: list[dict]
    locations: dict[str, str] = field(default_factory=dict)  # location -> "verified" or the problem
    data: str = ""  # what a storage snapshot holds beyond its index

    @property
    def verified(self) -> bool:
        return bool(self.locations) and all(state == "verified" for state in self.locations.values())


def build(locations: Sequence[Location], types: Sequence[BackupType], *, deep: bool) -> list[InventoryEntry]:
    """Every complete backup of ``types`` in any location, oldest first, each copy checked."""
    entries: dict[tuple[str, str], InventoryEntry] = {}
    for backup_type in types:
        for location in locations:
            for backup_id in list_backups(location, backup_type):
                try:
                    manifest: Manifest = read_manifest(location, backup_type, backup_id)
                except BackupError as error:
                    state = str(error)
                    entry = entries.setdefault(
                        (backup_type.value, backup_id), InventoryEntry(backup_type.value, backup_id, "", 0, [])
                    )
                    entry.locations[location.name] = state
                    continue
                entry = entries.setdefault(
                    (backup_type.value, backup_id),
                    InventoryEntry(
                        backup_type.value,
                        backup_id,
                        iso(manifest.completed_at),
                        manifest.size,
                        [{"path": a.path, "size": a.size, "sha256": a.sha256, "encryption": a.encryption} for a in manifest.artifacts],
                        data=(f"snapshot of {manifest.details['objects']} objects, {manifest.details['bytes']:,} bytes"
                              if backup_type == BackupType.STORAGE else ""),
                    ),
                )
                findings = verify_backup(location, manifest, deep=deep)
                entry.locations[location.name] = "; ".join(f.problem for f in findings) or "verified"
    for entry in entries.values():
        for location in locations:
            entry.locations.setdefault(location.name, "missing")
    return sorted(entries.values(), key=lambda entry: (entry.type, entry.backup_id))


def as_json(entries: Sequence[InventoryEntry]) -> list[dict]:
    """The entries for scripts: every field, ``verified`` included."""
    return [{**asdict(entry), "verified": entry.verified} for entry in entries]
