from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from bhv360_backup.locations import LocalLocation, S3Location
from bhv360_backup.repository import retention
from bhv360_backup.repository.catalog import list_backups, read_manifest, scan_backups, write_manifest
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import iso
from tests.conftest import BUCKET
from tests.locations.conftest import make_manifest

NOW = datetime(2026, 11, 26, 1, 0, tzinfo=timezone.utc)
POLICY = retention.RetentionPolicy(days=30, keep_min=3)


def store(location, days_ago):
    completed = NOW - timedelta(days=days_ago)
    backup_id = completed.strftime("%Y%m%dT%H%M%SZ")
    location.put_bytes(f"database/{backup_id}/database.dump", b"x")
    write_manifest(location, make_manifest(backup_id, completed))
    return backup_id


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.server)])
def location(request, tmp_path):
    if request.param == "local":
        return LocalLocation(tmp_path)
    return S3Location(request.getfixturevalue("s3").client(), BUCKET)


def test_deletes_past_the_policy_by_manifest_time(location):
    ids = {days: store(location, days) for days in (1, 2, 3, 10, 29, 31, 45)}
    report = retention.apply(location, BackupType.DATABASE, POLICY, NOW, dry_run=False)
    assert sorted(report.deleted) == sorted([ids[31], ids[45]])
    assert list_backups(location, BackupType.DATABASE) == sorted(ids[d] for d in (1, 2, 3, 10, 29))


def test_never_deletes_the_newest_three_whatever_their_age(location):
    ids = [store(location, days) for days in (40, 50, 60, 70, 80)]
    report = retention.apply(location, BackupType.DATABASE, POLICY, NOW, dry_run=False)
    assert sorted(report.deleted) == sorted(ids[3:])
    assert list_backups(location, BackupType.DATABASE) == sorted(ids[:3])


def test_dry_run_only_reports(location):
    ids = [store(location, days) for days in (1, 2, 3, 40)]
    report = retention.apply(location, BackupType.DATABASE, POLICY, NOW, dry_run=True)
    assert report.deleted == [ids[3]]
    assert list_backups(location, BackupType.DATABASE) == sorted(ids)


def test_unfinished_leftovers_go_after_a_day(tmp_path):
    location = LocalLocation(tmp_path)
    location.put_bytes("database/20261120T000000Z/database.dump", b"half")
    folders = scan_backups(location, BackupType.DATABASE)
    fresh = retention.plan(folders, {}, POLICY, folders[0].last_modified + timedelta(hours=1))
    stale = retention.plan(folders, {}, POLICY, folders[0].last_modified + timedelta(hours=25))
    assert [d.delete for d in fresh] == [False] and [d.delete for d in stale] == [True]
    retention.apply(location, BackupType.DATABASE, POLICY, folders[0].last_modified + timedelta(hours=25), dry_run=False)
    assert scan_backups(location, BackupType.DATABASE) == []


def test_an_unreadable_manifest_is_kept(tmp_path):
    location = LocalLocation(tmp_path)
    location.put_bytes("database/20250101T000000Z/manifest.json", b"{broken")
    report = retention.apply(location, BackupType.DATABASE, POLICY, NOW, dry_run=False)
    assert report.deleted == [] and report.errors
    assert list_backups(location, BackupType.DATABASE) == ["20250101T000000Z"]


def store_with(location, backup_type, days_ago, details):
    completed = NOW - timedelta(days=days_ago)
    backup_id = completed.strftime("%Y%m%dT%H%M%SZ")
    location.put_bytes(f"{backup_type.value}/{backup_id}/database.dump", b"x")
    write_manifest(location, replace(make_manifest(backup_id, completed, backup_type), details=details))
    return backup_id


def test_the_storage_snapshot_and_segments_a_restore_to_the_oldest_kept_moment_needs_are_kept(tmp_path):
    """Weekly snapshots, daily database backups: the oldest kept database backup (30 days) lies after the
    newest snapshot older than the window (36 days); a storage or full restore to that moment starts there."""
    location = LocalLocation(tmp_path)
    for day in range(40, -1, -1):
        store_with(location, BackupType.DATABASE, day, {"snapshot_time": iso(NOW - timedelta(days=day))})
        store_with(location, BackupType.INCREMENTAL, day - 0.5, {
            "end_lsn": f"0/{(41 - day) * 1000:X}", "captured_until": iso(NOW - timedelta(days=day - 0.5))})
    snapshots = {day: store_with(location, BackupType.STORAGE, day, {
        "listing_started_at": iso(NOW - timedelta(days=day))}) for day in (43, 36, 29, 22, 15, 8, 1)}

    protected = retention.protected_by_others(location, POLICY, NOW, BackupType.STORAGE)
    assert protected == {snapshots[36]}
    retention.apply(location, BackupType.STORAGE, POLICY, NOW, dry_run=False, protected=protected)
    assert list_backups(location, BackupType.STORAGE) == sorted(snapshots[day] for day in (36, 29, 22, 15, 8, 1))

    segments = retention.protected_by_others(location, POLICY, NOW, BackupType.INCREMENTAL)
    oldest_needed = min(read_manifest(location, BackupType.INCREMENTAL, backup_id).details["captured_until"]
                        for backup_id in segments)
    assert oldest_needed == iso(NOW - timedelta(days=35.5))  # the first to capture after the snapshot's listing


def test_segments_after_a_database_backup_that_a_kept_full_set_names_are_kept(tmp_path):
    location = LocalLocation(tmp_path)
    old = store_with(location, BackupType.DATABASE, 45, {"chain": {"exists": True, "confirmed_flush_lsn": "0/100"}})
    for day in (2, 1, 0):
        store_with(location, BackupType.DATABASE, day, {"chain": {"exists": True, "confirmed_flush_lsn": "5/0"}})
    store_with(location, BackupType.FULL, 3, {"components": {"database": {"backup_id": old}}})
    segment = store_with(location, BackupType.INCREMENTAL, 44, {"end_lsn": "0/200", "captured_until": iso(NOW)})
    assert retention.protected_by_others(location, POLICY, NOW, BackupType.INCREMENTAL) == {segment}
