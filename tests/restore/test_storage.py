"""Hostile object names from a storage source: stored as they are, restored to the same name or refused
with a message, never written outside the restore folder."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bhv360_backup.errors import BackupError
from bhv360_backup.locations import LocalLocation, S3Location
from bhv360_backup.pools import TASKS_AHEAD
from bhv360_backup.producers.storage import take_snapshot
from bhv360_backup.repository.blobs import verify_snapshot_blobs
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.snapshots import IndexEntry, read_index
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.restore import storage as restore_storage
from bhv360_backup.restore.storage import FolderSink, restore_snapshot, safe_object_path
from bhv360_backup.sources.storage import LocalFolderSource, S3StorageSource
from tests.conftest import BUCKET

SAFE = ["ok/normal name.txt", "%2e%2e/encoded dots are just characters.txt", "ontruiming café/foto 1.jpg",
        "deep/" * 60 + "file.txt"]
HOSTILE = ["../../escape.txt", "/absolute.txt", "a/../../b.txt", "nul\x00byte.txt", "ctrl\x01char.txt",
           "del\x7fchar.txt", "a//b.txt", "dir/./dot.txt", "back\\slash.txt", "folder-marker/", "x" * 1000]


@pytest.fixture
def hostile_bucket(moto_s3_server, monkeypatch):
    """moto, not SeaweedFS: AWS S3 stores any key up to 1,024 bytes, and so must a source be ready to read
    them; SeaweedFS keeps objects in a file tree and refuses or rewrites ``..``, ``.``, NUL, ``//``, a
    leading ``/`` and long keys, so these names can only be served by an S3 server that stores keys as
    AWS does. The source is made as a deployment makes it (obstore reads what it can address exactly,
    boto3 the rest), and counts the objects obstore read."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from bhv360_backup.runtime import native_s3_reader

    client = moto_s3_server.client()
    for bucket in client.list_buckets().get("Buckets", []):
        for item in client.list_objects_v2(Bucket=bucket["Name"]).get("Contents", []):
            client.delete_object(Bucket=bucket["Name"], Key=item["Key"])
        client.delete_bucket(Bucket=bucket["Name"])
    client.create_bucket(Bucket="incidents", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for name in SAFE + HOSTILE:
        client.put_object(Bucket="incidents", Key=name, Body=f"content of {name!r}".encode())
    monkeypatch.setenv("AIRFLOW_CONN_BHV360_HOSTILE_S3", moto_s3_server.connection_json())
    hook = S3Hook(aws_conn_id="bhv360_hostile_s3")
    native = native_s3_reader(hook, hook.get_session(), client)
    read_natively = []
    native_open = native.open
    native.open = lambda obj: read_natively.append(obj.path) or native_open(obj)
    source = S3StorageSource(client, ["incidents"], native)
    source.read_natively = read_natively
    return source


def files_under(folder):
    return {os.path.relpath(os.path.join(path, name), folder) for path, _, names in os.walk(folder) for name in names}


def test_hostile_names_are_kept_in_the_snapshot_and_refused_or_restored_by_name(tmp_path, s3, hostile_bucket):
    locations = [LocalLocation(tmp_path / "backups"), S3Location(s3.client(), BUCKET)]
    writer = BackupWriter(locations, BackupType.STORAGE, "20261126T030000Z")
    manifest, stats = take_snapshot(hostile_bucket, writer, dag_id="test", run_id="test", parallelism=4)
    writer.raise_for_failures()
    assert sorted(hostile_bucket.read_natively) == sorted(SAFE + ["back\\slash.txt", "x" * 1000])

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


def folder_snapshot(tmp_path, count: int):
    """A snapshot in a local location of ``count`` small files in one bucket of a folder source."""
    for i in range(count):
        folder = tmp_path / "source" / "floor-plans" / f"org-{i % 13}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"plan {i}.txt").write_bytes(f"plan {i}".encode())
    location = LocalLocation(tmp_path / "backups")
    writer = BackupWriter([location], BackupType.STORAGE, "20261126T030000Z")
    manifest, _ = take_snapshot(LocalFolderSource(tmp_path / "source"), writer, dag_id="test", run_id="test",
                                parallelism=2)
    writer.raise_for_failures()
    return location, manifest


def test_a_restore_streams_the_index_instead_of_holding_it(tmp_path, monkeypatch):
    location, manifest = folder_snapshot(tmp_path, 2000)
    read = {"entries": 0, "at_first_write": None}

    def counted_index(*args, **kwargs):
        for entry in read_index(*args, **kwargs):
            read["entries"] += 1
            yield entry

    class CountingSink(FolderSink):
        def write(self, entry, chunks):
            if read["at_first_write"] is None:
                read["at_first_write"] = read["entries"]
            super().write(entry, chunks)

    monkeypatch.setattr(restore_storage, "read_index", counted_index)
    result = restore_snapshot(manifest, [location], CountingSink(tmp_path / "restored"), parallelism=2)

    assert result.restored == 2000 and result.failed == result.check_problems == []
    assert read["entries"] == 2 * 2000  # once to restore, once to check
    assert read["at_first_write"] <= 2 * TASKS_AHEAD + 2 + 1 < 2000


def test_an_unexpected_error_at_the_target_fails_that_object_and_the_rest_go_on(tmp_path):
    location, manifest = folder_snapshot(tmp_path, 20)

    class FlakySink(FolderSink):
        def is_identical(self, entry):
            if entry.path == "org-3/plan 3.txt":
                raise PermissionError("target folder is read-only")
            return super().is_identical(entry)

    result = restore_snapshot(manifest, [location], FlakySink(tmp_path / "restored"), parallelism=2)

    assert result.failed == ["floor-plans/org-3/plan 3.txt: target folder is read-only"]
    assert result.restored == 19


def test_a_folder_target_without_a_restore_root_is_refused_naming_the_variable(tmp_path):
    from bhv360_backup.restore.storage import folder_target

    with pytest.raises(BackupError, match="need the variable bhv360_restore_folder_root"):
        folder_target(str(tmp_path / "anywhere"), None, [])


def test_a_folder_target_must_lie_inside_the_restore_root_and_away_from_airflow(tmp_path):
    from bhv360_backup.restore.storage import folder_target

    root, dags = tmp_path / "restores", tmp_path / "restores" / "dags"
    dags.mkdir(parents=True)
    (root / "escape").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (root / "used").mkdir()
    (root / "used" / "x").write_text("x")
    assert folder_target(str(root / "drill-1"), root, [dags]) == (root / "drill-1").resolve()
    for requested, problem in ((str(tmp_path / "dags"), "outside the restore root"),
                               (str(root / ".." / "plugins"), "outside the restore root"),
                               (str(root / "escape" / "bucket"), "outside the restore root"),
                               (str(root), "outside the restore root"),
                               (str(dags / "sub"), "is or holds .*dags"),
                               ("relative/path", "outside the restore root"),
                               (str(root / "used"), "not empty")):
        with pytest.raises(BackupError, match=problem):
            folder_target(requested, root, [dags])


def test_an_explicit_storage_snapshot_taken_after_the_moment_is_refused_naming_the_one_before(tmp_path):
    import time

    from bhv360_backup.errors import BackupError
    from bhv360_backup.repository.manifest import utc_now
    from bhv360_backup.restore.plan import build_plan
    from bhv360_backup.restore.request import parse_request

    (tmp_path / "source" / "b").mkdir(parents=True)
    (tmp_path / "source" / "b" / "x.txt").write_text("x")
    locations = [LocalLocation(tmp_path / "backups")]
    for backup_id in ("20261201T000000Z", "20261202T000000Z"):
        take_snapshot(LocalFolderSource(tmp_path / "source"), BackupWriter(locations, BackupType.STORAGE, backup_id),
                      dag_id="t", run_id="t")
        if backup_id.startswith("20261201"):
            time.sleep(1.1)
            moment = utc_now()
            time.sleep(1.1)
    request = parse_request({"type": "storage", "paths": {"storage": "20261202T000000Z"},
                             "point_in_time": moment.isoformat()}, backup_root=str(locations[0].root), bucket=BUCKET)
    with pytest.raises(BackupError, match="storage backup 20261202T000000Z was taken at .* after point_in_time .*: it "
                                          "cannot restore that moment; the newest storage backup before it is "
                                          "20261201T000000Z"):
        build_plan(request, locations, {}, None)
