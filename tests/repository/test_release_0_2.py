"""Backups made by release 0.2.0 stay readable, verifiable and restorable by this release."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bhv360_backup.locations import LocalLocation
from bhv360_backup.repository.blobs import verify_snapshot_blobs
from bhv360_backup.repository.catalog import list_backups, read_manifest
from bhv360_backup.repository.config import read_config
from bhv360_backup.repository.database import read_access_model
from bhv360_backup.repository.encryption import parse_identities
from bhv360_backup.repository.fullset import verify_components
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.snapshots import read_index
from bhv360_backup.repository.verify import verify_backup
from bhv360_backup.restore.plan import build_plan
from bhv360_backup.restore.request import parse_request
from bhv360_backup.restore.run import RestoreTargets, check_targets, execute_plan
from bhv360_backup.restore.storage import FolderSink

RELEASE = Path(__file__).parents[1] / "fixtures" / "release_0_2"
SET_ID, ENCRYPTED_ID = "20261121T030000Z", "20261122T000000Z"


@pytest.fixture
def location(tmp_path):
    shutil.copytree(RELEASE / "backups", tmp_path / "backups")
    return LocalLocation(tmp_path / "backups")


def test_every_backup_is_listed_and_verifies_in_full(location):
    assert list_backups(location, BackupType.DATABASE) == [SET_ID, ENCRYPTED_ID]
    for backup_type in BackupType:
        for backup_id in list_backups(location, backup_type):
            manifest = read_manifest(location, backup_type, backup_id)
            assert verify_backup(location, manifest, deep=True) == []
    storage = read_manifest(location, BackupType.STORAGE, SET_ID)
    assert verify_snapshot_blobs(location, storage) == []
    assert sorted(entry.path for entry in read_index(location, storage)) == ["org-1/cert 1.pdf", "org-2/cert 2.pdf"]
    assert verify_components(location, read_manifest(location, BackupType.FULL, SET_ID)) == []
    config = read_config(location, read_manifest(location, BackupType.CONFIG, SET_ID))
    assert config["settings_tables"]["tables"]["app_settings"] == [{"key": "alarm_number", "value": "112"}]
    assert read_access_model(location, read_manifest(location, BackupType.DATABASE, SET_ID)) is None


def restore(location, request_body, database, tmp_path, identities=()):
    request = parse_request(request_body, backup_root=str(location.root), bucket="-")
    locations = {"local": location}
    targets = RestoreTargets(database=database, sink=FolderSink(tmp_path / "restored"), work_dir=tmp_path / "work",
                             identities=identities)
    plan = build_plan(request, list(locations.values()), {}, None, identities)
    check_targets(plan, request, locations, targets)
    return plan, execute_plan(plan, request, locations, targets)


def test_the_full_set_restores_with_its_grants_restored_but_not_compared(location, pg_database, tmp_path):
    plan, report = restore(location, {"type": "full", "paths": {"database": SET_ID, "storage": SET_ID,
                                                                "config": "latest"}}, pg_database, tmp_path)
    assert report["database"]["rows"] == 45 and report["database"]["access"]["checked"] is False
    assert any("predates access models" in note for note in plan.notes)
    assert (tmp_path / "restored" / "certificates" / "org-1" / "cert 1.pdf").read_bytes() == b"%PDF-1.4 certificate one"
    assert report["storage_objects"]["rows_without_file"] == 0


def test_the_encrypted_backup_restores_with_its_key(location, pg_database, tmp_path):
    identities = parse_identities((RELEASE / "age-key.txt").read_text(), "the release's test key")
    plan, report = restore(location, {"type": "database", "paths": {"database": ENCRYPTED_ID}}, pg_database, tmp_path,
                           identities)
    assert report["database"]["rows"] == 45
