"""A location's backups, read the same way from a folder and from a bucket (the real S3 server)."""

from __future__ import annotations

import pytest

from bhv360_backup.locations import ArtifactMissing, LocalLocation, S3Location
from bhv360_backup.repository.catalog import (
    delete_backup,
    list_backups,
    read_manifest,
    scan_backups,
    write_manifest,
)
from bhv360_backup.repository.layout import BackupType
from tests.conftest import BUCKET
from tests.locations.conftest import make_manifest


@pytest.fixture(params=["local", "s3"])
def location(request, tmp_path):
    if request.param == "local":
        return LocalLocation(tmp_path)
    return S3Location(request.getfixturevalue("s3").client(), BUCKET)


def test_a_folder_is_a_backup_once_its_manifest_is_there_and_stops_being_one_before_its_artifacts_go(location):
    location.put_bytes("database/20260101T000000Z/database.dump", b"x")
    location.put_bytes("database/20260102T000000Z/database.dump", b"x")
    location.put_bytes("database/not-a-backup/database.dump", b"x")
    location.put_bytes("database/README", b"x")
    write_manifest(location, make_manifest("20260102T000000Z"))
    assert list_backups(location, BackupType.DATABASE) == ["20260102T000000Z"]
    assert [(f.backup_id, f.complete) for f in scan_backups(location, BackupType.DATABASE)] == [
        ("20260101T000000Z", False), ("20260102T000000Z", True)]
    assert read_manifest(location, BackupType.DATABASE, "20260102T000000Z") == make_manifest("20260102T000000Z")
    delete_backup(location, BackupType.DATABASE, "20260102T000000Z")
    assert [f.backup_id for f in scan_backups(location, BackupType.DATABASE)] == ["20260101T000000Z"]
    with pytest.raises(ArtifactMissing):
        location.read_bytes("database/20260102T000000Z/database.dump")
    assert location.read_bytes("database/README") == b"x"
