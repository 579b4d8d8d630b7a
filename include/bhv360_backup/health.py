"""The daily health check: every type in every location is fresh, intact and the same, and the
newest restore drill passed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from bhv360_backup import joblog
from bhv360_backup.errors import BackupError
from bhv360_backup.layout import BackupType
from bhv360_backup.locations.base import Location
from bhv360_backup.manifest import parse_iso
from bhv360_backup.snapshot import verify_snapshot_blobs
from bhv360_backup.verify import verify_backup

MAX_AGE = {
    BackupType.DATABASE: timedelta(hours=26),
    BackupType.CONFIG: timedelta(hours=26),
    BackupType.STORAGE: timedelta(days=8),
    BackupType.FULL: timedelta(days=8),
}
DRILL_MAX_AGE = timedelta(days=8)


class HealthFindings(BackupError):
    """The check found problems; ``details`` is the table for the alert."""

    def __init__(self, findings: list[str], table: list[str]) -> None:
        super().__init__(f"{len(findings)} backup health finding(s): {findings[0]}")
        self.details = ["Findings:", *findings, "", *table]


@dataclass
class Row:
    type: str
    location: str
    newest: str
    age: str
    size: int
    state: str

    def render(self) -> str:
        return f"{self.type:<9} {self.location:<6} {self.newest:<27} {self.age:>9} {self.size:>14,}  {self.state}"


def format_age(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


def check(
    locations: Sequence[Location], now: datetime, log_dir: Path, *, deep_sample: int = 1
) -> tuple[list[Row], list[str]]:
    """Rows of the state table and the findings. ``deep_sample`` backups of each type and location
    get a full sha256 read-back each day, rotating through them by date."""
    rows: list[Row] = []
    findings: list[str] = []
    day = now.toordinal()
    for backup_type in BackupType:
        ids_by_location: dict[str, set[str]] = {}
        for location in locations:
            try:
                ids = location.list_backups(backup_type)
            except Exception as error:  # noqa: BLE001 - reported as a finding
                findings.append(f"{backup_type.value} @ {location.name}: location unreadable: {error}")
                continue
            ids_by_location[location.name] = set(ids)
            if not ids:
                findings.append(f"{backup_type.value} @ {location.name}: no complete backup")
                rows.append(Row(backup_type.value, location.name, "-", "-", 0, "MISSING"))
                continue
            newest = location.read_manifest(backup_type, ids[-1])
            age = now - newest.completed_at
            problems = [f.problem for f in verify_backup(location, newest, deep=False)]
            if backup_type == BackupType.STORAGE and not problems:
                problems = verify_snapshot_blobs(location, newest)[:3]
            sampled = [ids[(day + offset) % len(ids)] for offset in range(min(deep_sample, len(ids)))]
            for backup_id in sampled:
                manifest = location.read_manifest(backup_type, backup_id)
                problems += [f"{backup_id}: {f.problem}" for f in verify_backup(location, manifest, deep=True)]
            state = "ok"
            if age > MAX_AGE[backup_type]:
                state = "STALE"
                findings.append(f"{backup_type.value} @ {location.name}: newest backup {ids[-1]} is {format_age(age)} old "
                                f"(allowed {format_age(MAX_AGE[backup_type])})")
            if problems:
                state = "DAMAGED"
                findings += [f"{backup_type.value} @ {location.name}: {problem}" for problem in problems[:5]]
            rows.append(Row(backup_type.value, location.name, ids[-1], format_age(age), newest.size, state))
        if len(ids_by_location) == len(locations) > 1:
            union = set.union(*ids_by_location.values())
            for name, ids in ids_by_location.items():
                missing = sorted(union - ids)
                if missing:
                    findings.append(f"{backup_type.value} @ {name}: lacks {len(missing)} backup(s) the other location "
                                    f"has: {', '.join(missing[:5])}")
    drills = joblog.read(log_dir, "drill")
    if not drills:
        findings.append("restore drill: no drill has run yet")
    else:
        last = drills[-1]
        if last["status"] != "success":
            findings.append(f"restore drill: the newest drill failed: {str(last.get('error', '')).splitlines()[0][:200]}")
        elif now - parse_iso(last["time"]) > DRILL_MAX_AGE:
            findings.append(f"restore drill: the newest drill passed {format_age(now - parse_iso(last['time']))} ago")
    return rows, findings


def render_table(rows: Sequence[Row]) -> list[str]:
    header = f"{'type':<9} {'where':<6} {'newest':<27} {'age':>9} {'size':>14}  state"
    return [header, *(row.render() for row in rows)]
