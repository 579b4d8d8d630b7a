from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import Artifact, Manifest


def make_manifest(backup_id: str, completed_at: datetime | None = None, backup_type=BackupType.DATABASE) -> Manifest:
    completed_at = completed_at or datetime(2026, 1, 1, tzinfo=timezone.utc)
    return Manifest(
        backup_id=backup_id,
        type=backup_type,
        started_at=completed_at - timedelta(minutes=1),
        completed_at=completed_at,
        dag_id="test",
        run_id="test",
        artifacts=(Artifact("database.dump", 1, "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"),),
    )
