"""Retention: which backups of a type a location keeps, and the deletions that follow."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bhv360_backup.errors import BackupError
from bhv360_backup.locations.base import BackupLocked, Location
from bhv360_backup.postgres.positions import lsn_position
from bhv360_backup.repository.catalog import (
    BackupFolder,
    delete_backup,
    list_backups,
    read_manifest,
    scan_backups,
)
from bhv360_backup.repository.fullset import COMPONENT_TYPES
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import Manifest, iso, parse_iso

log = logging.getLogger(__name__)

LEFTOVER_AGE = timedelta(hours=24)


@dataclass(frozen=True)
class RetentionPolicy:
    days: int
    keep_min: int
    leftover_age: timedelta = LEFTOVER_AGE


@dataclass(frozen=True)
class Decision:
    backup_id: str
    delete: bool
    reason: str


def plan(
    folders: list[BackupFolder],
    completed_at: dict[str, datetime],
    policy: RetentionPolicy,
    now: datetime,
    protected: Collection[str] = (),
) -> list[Decision]:
    """Decide for every folder. ``completed_at`` holds the manifest time of each readable complete backup.

    Complete backups go once their manifest's ``completed_at`` is past the policy, except the
    newest ``keep_min`` and any ``protected`` id (e.g. a component of a kept full set). A
    complete backup whose manifest cannot be read is kept: nothing is deleted unjudged.
    Unfinished folders go once nothing was written to them for ``leftover_age``.
    """
    cutoff = now - timedelta(days=policy.days)
    newest = sorted(completed_at, key=lambda backup_id: (completed_at[backup_id], backup_id))[-policy.keep_min :]
    decisions = []
    for folder in folders:
        backup_id = folder.backup_id
        if not folder.complete:
            stale = folder.last_modified < now - policy.leftover_age
            reason = "unfinished leftover" + (f", untouched since {iso(folder.last_modified)}" if stale else ", recent")
            decisions.append(Decision(backup_id, stale, reason))
        elif backup_id not in completed_at:
            decisions.append(Decision(backup_id, False, "manifest unreadable: kept for inspection"))
        elif backup_id in newest:
            decisions.append(Decision(backup_id, False, f"one of the newest {policy.keep_min}"))
        elif backup_id in protected:
            decisions.append(Decision(backup_id, False, "part of a kept full backup"))
        elif completed_at[backup_id] < cutoff:
            decisions.append(
                Decision(backup_id, True, f"completed {iso(completed_at[backup_id])}, older than {policy.days} days")
            )
        else:
            decisions.append(Decision(backup_id, False, "within retention"))
    return decisions


@dataclass
class RetentionReport:
    location: str
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def apply(
    location: Location,
    backup_type: BackupType,
    policy: RetentionPolicy,
    now: datetime,
    *,
    dry_run: bool,
    protected: Collection[str] = (),
) -> RetentionReport:
    """Plan and (unless ``dry_run``) carry out retention for one type in one location."""
    if not dry_run:
        aborted = location.abort_unfinished(now - policy.leftover_age)
        if aborted:
            log.info("%s: aborted %d unfinished upload(s) left by killed runs", location.name, aborted)
    folders = scan_backups(location, backup_type)
    completed_at = {}
    report = RetentionReport(location.name)
    for folder in folders:
        if folder.complete:
            try:
                completed_at[folder.backup_id] = read_manifest(location, backup_type, folder.backup_id).completed_at
            except BackupError as error:
                report.errors.append(str(error))
    for decision in plan(folders, completed_at, policy, now, protected):
        if not decision.delete:
            report.kept.append(decision.backup_id)
            continue
        verb = "would delete" if dry_run else "deleting"
        log.info("%s: %s %s %s (%s)", location.name, verb, backup_type.value, decision.backup_id, decision.reason)
        if not dry_run:
            try:
                delete_backup(location, backup_type, decision.backup_id)
            except BackupLocked as locked:
                log.info("%s: kept %s: %s", location.name, decision.backup_id, locked)
                report.kept.append(decision.backup_id)
                continue
        report.deleted.append(decision.backup_id)
    return report


def _kept_database_backups(location: Location, policy: RetentionPolicy, now: datetime) -> list[Manifest]:
    """The database backups retention keeps, those a kept full set names included."""
    folders = scan_backups(location, BackupType.DATABASE)
    manifests = {folder.backup_id: read_manifest(location, BackupType.DATABASE, folder.backup_id)
                 for folder in folders if folder.complete}
    completed = {backup_id: manifest.completed_at for backup_id, manifest in manifests.items()}
    protected = protected_components(location, policy, now, BackupType.DATABASE)
    return [manifests[decision.backup_id] for decision in plan(folders, completed, policy, now, protected)
            if not decision.delete and decision.backup_id in manifests]


def _snapshot_before(location: Location, kept: list[Manifest]) -> Manifest | None:
    """The storage snapshot a restore to the oldest moment a kept database backup reaches starts from: the
    newest one taken at or before it (snapshots are rarer than database backups)."""
    if not kept:
        return None
    start = min(manifest.data_time for manifest in kept)
    before = [manifest for manifest in (read_manifest(location, BackupType.STORAGE, folder.backup_id)
                                        for folder in scan_backups(location, BackupType.STORAGE) if folder.complete)
              if manifest.data_time <= start]
    return max(before, key=lambda manifest: (manifest.data_time, manifest.backup_id), default=None)


def protected_snapshots(location: Location, policy: RetentionPolicy, now: datetime) -> set[str]:
    """The storage snapshot a restore to the oldest moment a kept database backup reaches starts from."""
    snapshot = _snapshot_before(location, _kept_database_backups(location, policy, now))
    return {snapshot.backup_id} if snapshot else set()


def protected_segments(location: Location, policy: RetentionPolicy, now: datetime) -> set[str]:
    """Ids of incremental segments a kept backup still needs: every segment that ends after the oldest kept
    database backup's place in the change stream, or after the start of the storage snapshot a restore to
    that moment starts from (a replay from either reads them)."""
    kept = _kept_database_backups(location, policy, now)
    starts = [lsn_position(manifest.details["chain"]["confirmed_flush_lsn"]) for manifest in kept
              if (manifest.details.get("chain") or {}).get("exists")]
    snapshot = _snapshot_before(location, kept)
    needed = set()
    for backup_id in list_backups(location, BackupType.INCREMENTAL):
        details = read_manifest(location, BackupType.INCREMENTAL, backup_id).details
        if (starts and lsn_position(details["end_lsn"]) > min(starts)) or \
                (snapshot and parse_iso(details["captured_until"]) > snapshot.data_time):
            needed.add(backup_id)
    return needed


def protected_by_others(location: Location, policy: RetentionPolicy, now: datetime, backup_type: BackupType) -> set[str]:
    """Backups of ``backup_type`` that other kept backups need: a kept full set's components, the segments
    after a kept database backup, the storage snapshot a restore to the oldest kept moment starts from."""
    if backup_type == BackupType.INCREMENTAL:
        return protected_segments(location, policy, now)
    if backup_type == BackupType.STORAGE:
        return protected_components(location, policy, now, backup_type) | protected_snapshots(location, policy, now)
    return protected_components(location, policy, now, backup_type)


def protected_components(
    location: Location, policy: RetentionPolicy, now: datetime, backup_type: BackupType
) -> set[str]:
    """Ids of ``backup_type`` backups that a full set retention keeps still names."""
    if backup_type not in COMPONENT_TYPES:
        return set()
    folders = scan_backups(location, BackupType.FULL)
    manifests = {}
    for folder in folders:
        if folder.complete:
            try:
                manifests[folder.backup_id] = read_manifest(location, BackupType.FULL, folder.backup_id)
            except BackupError as error:
                raise BackupError(f"full set {folder.backup_id} unreadable, its components' retention is unknown: {error}") from None
    completed = {backup_id: manifest.completed_at for backup_id, manifest in manifests.items()}
    kept = [d.backup_id for d in plan(folders, completed, policy, now) if not d.delete and d.backup_id in manifests]
    return {
        manifests[backup_id].details["components"][backup_type.value]["backup_id"]
        for backup_id in kept
        if backup_type.value in manifests[backup_id].details.get("components", {})
    }
