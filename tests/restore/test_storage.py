"""Hostile object names from a storage source: stored as they are, restored to the same name or refused
with a message, never written outside the restore folder."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bhv360_backup.errors import BackupError
from bhv360_backup.locations import LocalLocation, S3Location
from bhv360_backup.producers.storage import take_snapshot
from bhv360_backup.repository.blobs import verify_snapshot_blobs
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.snapshots import IndexEntry, read_index
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.restore.storage import FolderSink, restore_snapshot, safe_object_path
from bhv360_backup.sources.storage import S3StorageSource
from tests.conftest import BUCKET

SAFE = ["ok/normal name.txt", "%2e%2e/encoded dots are just characters.txt", "ontruiming café/foto 1.jpg",
        "deep/" * 60 + "file.txt"]
HOSTILE = ["../../escape.txt", "/absolute.txt", "a/../../b.txt", "nul\x00byte.txt", "ctrl\x01char.txt",
           "del\x7fchar.txt", "a//b.txt", "dir/./dot.txt", "back\\slash.txt", "folder-marker/", "x" * 1000]


@pytest.fixture
def hostile_bucket(s3):
    client = s3.client()
    client.create_bucket(Bucket="incidents", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for name in SAFE + HOSTILE:
        client.put_object(Bucket="incidents", Key=name, Body=f"content of {name!r}".encode())
    return S3StorageSource(client, ["incidents"])


def files_under(folder):
    return {os.path.relpath(os.path.join(path, name), folder) for path, _, names in os.walk(folder) for name in names}


def test_hostile_names_are_kept_in_the_snapshot_and_refused_or_restored_by_name(tmp_path, s3, hostile_bucket):
    locations = [LocalLocation(tmp_path / "backups"), S3Location(s3.client(), BUCKET)]
    writer = BackupWriter(locations, BackupType.STORAGE, "20261126T030000Z")
    manifest, stats = take_snapshot(hostile_bucket, writer, dag_id="test", run_id="test", parallelism=4)
    writer.raise_for_failures()

    for location in locations:  # stored safely: names live only in the index, blobs are named by content
        assert sorted(e.path for e in read_index(location, manifest)) == sorted(SAFE + HOSTILE)
        assert verify_snapshot_blobs(location, manifest) == []
    stored = files_under(tmp_path / "backups")
    assert all(key.startswith(("storage/20261126T030000Z/", "blobs/")) for key in stored), stored

    target = tmp_path / "sandbox" / "restore"
    result = restore_snapshot(manifest, locations, FolderSink(target))

    assert result.failed == [] and result.restored == len(SAFE)
    for name in SAFE:
        assert (target / "incidents" / name).read_bytes() == f"content of {name!r}".encode()
    refused = "\n".join(result.refused)
    assert len(result.refused) == len(HOSTILE)
    assert all(repr(f"incidents/{name}")[:40] in refused for name in HOSTILE)
    assert "longer than 255 bytes" in refused and "control characters" in refused and "unsafe relative path" in refused
    assert files_under(tmp_path / "sandbox") == {os.path.join("restore", "incidents", name) for name in SAFE}


@given(st.text(min_size=1, max_size=400) | st.lists(st.sampled_from(["..", ".", "", "a", "/", "\x00", "é"]),
                                                      max_size=12).map("/".join))
def test_any_name_maps_to_itself_inside_its_bucket_folder_or_is_refused(name):
    entry = IndexEntry("incidents", name, "0" * 64, 1, None, None, "etag", "2026-11-26T00:00:00Z")
    try:
        relative = safe_object_path(entry)
    except BackupError:
        return
    assert relative == f"incidents/{name}"  # restored to the same name
    assert os.path.normpath(os.path.join("/restore", relative)).startswith("/restore/incidents/")
    assert all(0 < len(part.encode()) <= 255 for part in relative.split("/"))
