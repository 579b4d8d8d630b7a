"""Storage snapshots into both locations: incremental, deduplicated, bounded memory, garbage-collected."""

from __future__ import annotations

import gc
import hashlib
import os
import threading
import time
import tracemalloc
from datetime import timedelta

import pytest

from bhv360_backup.demo.servers import S3_REGION
from bhv360_backup.errors import BackupError
from bhv360_backup.locations import LocalLocation, S3Location
from bhv360_backup.pools import TASKS_AHEAD
from bhv360_backup.producers import storage as storage_producer
from bhv360_backup.producers.storage import take_snapshot
from bhv360_backup.repository import retention
from bhv360_backup.repository.blobs import collect_garbage, verify_snapshot_blobs
from bhv360_backup.repository.catalog import list_backups, write_manifest
from bhv360_backup.repository.layout import BLOB_PREFIX, BackupType, blob_key
from bhv360_backup.repository.manifest import utc_now
from bhv360_backup.repository.snapshots import read_blob_rows, read_index
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.sources.storage import (
    BucketInfo,
    LocalFolderSource,
    ObjectInfo,
    OpenedObject,
    StorageSource,
    SupabaseStorageSource,
)
from tests.conftest import BUCKET
from tests.fixtures.disks import disk_losing_write_back
from tests.fixtures.supabase_storage import SERVICE_KEY

_ids = iter(f"20261101T{h:02d}{m:02d}00Z" for h in range(24) for m in range(60))


@pytest.fixture
def locations(tmp_path, s3):
    return [LocalLocation(tmp_path / "backups"), S3Location(s3.client(), BUCKET)]


def snapshot(source, locations, parallelism=4):
    writer = BackupWriter(locations, BackupType.STORAGE, next(_ids))
    manifest, stats = take_snapshot(source, writer, dag_id="test", run_id="test", parallelism=parallelism)
    writer.raise_for_failures()
    return manifest, stats


def index(location, manifest):
    return {(e.bucket, e.path): e for e in read_index(location, manifest)}


def fill(server):
    server.create_bucket("certificates", allowed_mime_types=["application/pdf"])
    server.create_bucket("floor-plans", public=True)
    for i in range(30):
        server.put("certificates", f"org-{i % 3}/staff {i}/BHV basis.pdf", f"%PDF {i}".encode(), "application/pdf")
    server.put("floor-plans", "org-1/verdieping 1.png", b"\x89PNG same", "image/png", "max-age=60")
    server.put("floor-plans", "org-2/copy of verdieping 1.png", b"\x89PNG same", "image/png")
    server.put("floor-plans", "empty.txt", b"", "text/plain")


def test_snapshot_lands_in_both_locations_with_shared_blobs(storage_api, locations):
    fill(storage_api)
    manifest, stats = snapshot(SupabaseStorageSource(storage_api.url, SERVICE_KEY), locations)

    assert (stats.seen, stats.downloaded, stats.reused, stats.skipped) == (33, 33, 0, 0)
    assert manifest.details["objects"] == 33
    assert {b["id"]: b["public"] for b in manifest.details["buckets"]} == {"certificates": False, "floor-plans": True}
    for location in locations:
        entries = index(location, manifest)
        plan = entries[("floor-plans", "org-1/verdieping 1.png")]
        assert (plan.content_type, plan.cache_control) == ("image/png", "max-age=60")
        assert plan.sha256 == entries[("floor-plans", "org-2/copy of verdieping 1.png")].sha256
        assert location.read_bytes(blob_key(plan.sha256)) == b"\x89PNG same"
        assert hashlib.sha256(location.read_bytes(blob_key(plan.sha256))).hexdigest() == plan.sha256
        assert entries[("floor-plans", "empty.txt")].size == 0
        assert len(list(location.iter_objects(BLOB_PREFIX))) == 32  # two objects share one blob
        assert verify_snapshot_blobs(location, manifest) == []
        assert [o.key for o in location.iter_objects("blobs/") if "/." in o.key] == []  # no staging left
        assert list(location.iter_objects("locks/")) == []  # the run's lock is released


def test_second_run_downloads_nothing_then_only_what_changed(storage_api, locations):
    fill(storage_api)
    source = SupabaseStorageSource(storage_api.url, SERVICE_KEY)
    snapshot(source, locations)
    storage_api.requests.clear()

    second, stats = snapshot(source, locations)
    assert (stats.downloaded, stats.reused, stats.bytes_transferred) == (0, 33, 0)
    assert storage_api.downloads() == []

    storage_api.put("certificates", "org-0/staff 0/BHV basis.pdf", b"%PDF renewed", "application/pdf")
    storage_api.put("certificates", "org-9/new.pdf", b"%PDF new", "application/pdf")
    storage_api.delete("floor-plans", "empty.txt")
    storage_api.requests.clear()
    third, stats = snapshot(source, locations)
    assert sorted(storage_api.downloads()) == [
        "/storage/v1/object/authenticated/certificates/org-0/staff 0/BHV basis.pdf",
        "/storage/v1/object/authenticated/certificates/org-9/new.pdf",
    ]
    entries = index(locations[1], third)
    assert ("floor-plans", "empty.txt") not in entries
    assert locations[1].read_bytes(blob_key(entries[("certificates", "org-9/new.pdf")].sha256)) == b"%PDF new"
    assert ("floor-plans", "empty.txt") in index(locations[1], second)  # the older snapshot still has it


def test_object_deleted_during_the_run_is_skipped(storage_api, locations, monkeypatch):
    fill(storage_api)
    source = SupabaseStorageSource(storage_api.url, SERVICE_KEY)
    listed = source.list_objects

    def list_then_delete(bucket):
        for obj in listed(bucket):
            if (bucket, obj.path) == ("certificates", "org-0/staff 0/BHV basis.pdf"):
                storage_api.delete(bucket, obj.path)  # listed, then gone before its download
            yield obj

    monkeypatch.setattr(source, "list_objects", list_then_delete)
    manifest, stats = snapshot(source, locations)
    assert stats.skipped == 1 and stats.skipped_objects == ["certificates/org-0/staff 0/BHV basis.pdf"]
    assert manifest.details["objects"] == 32


def test_5xx_and_429_are_retried_until_the_snapshot_completes(storage_api, locations, monkeypatch):
    monkeypatch.setattr("bhv360_backup.sources.storage.RETRY_BASE_DELAY_S", 0.01)
    fill(storage_api)
    storage_api.failing_paths_every = 3
    manifest, stats = snapshot(SupabaseStorageSource(storage_api.url, SERVICE_KEY), locations)
    assert stats.downloaded == 33 and manifest.details["objects"] == 33
    retried = [key for key, count in storage_api.attempts.items() if count == 3]
    assert len(retried) >= 5  # a 429, a 503, then success


def test_a_failed_run_leaves_no_snapshot_and_the_next_one_completes(storage_api, locations):
    fill(storage_api)
    storage_api.put("certificates", "forbidden.pdf", b"%PDF", "application/pdf")
    source = SupabaseStorageSource(storage_api.url, SERVICE_KEY)
    opened = source.open_object

    def refuse_one(obj):
        if obj.path == "forbidden.pdf":
            raise BackupError("Supabase Storage refused certificates/forbidden.pdf: HTTP 403")
        return opened(obj)

    source.open_object = refuse_one
    with pytest.raises(BackupError, match="1 object\\(s\\) could not be copied: certificates/forbidden.pdf"):
        snapshot(source, locations)
    for location in locations:
        assert list_backups(location, BackupType.STORAGE) == []
        assert list(location.iter_objects("locks/")) == []
        stored = len(list(location.iter_objects(BLOB_PREFIX)))
        assert stored == 32  # what was copied stays (two objects share a blob)

    source.open_object = opened
    manifest, stats = snapshot(source, locations)
    assert manifest.details["objects"] == 34


def test_a_large_object_streams_in_flat_memory(tmp_path, storage_api):
    # moto keeps objects in this process's memory, so memory is traced with the local location only
    video = tmp_path / "drill recording.mp4"
    with open(video, "wb") as handle:
        for _ in range(80):
            handle.write(os.urandom(1 << 20))
    storage_api.create_bucket("videos")
    storage_api.put("videos", "2026/drill recording.mp4", video, "video/mp4")
    location = LocalLocation(tmp_path / "backups")
    tracemalloc.start()
    try:
        manifest, stats = snapshot(SupabaseStorageSource(storage_api.url, SERVICE_KEY), [location], parallelism=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stats.bytes_transferred == 80 << 20
    assert peak < 40 << 20, f"peak traced memory {peak / 1e6:.0f} MB for an 84 MB object"
    (entry,) = read_index(location, manifest)
    assert location.path_of(blob_key(entry.sha256)).stat().st_size == 80 << 20


def test_retention_then_gc_removes_only_unreferenced_blobs(tmp_path, locations):
    source_root = tmp_path / "source"
    (source_root / "b").mkdir(parents=True)
    manifests = []
    for round_number in range(5):
        (source_root / "b" / "changing.txt").write_text(f"version {round_number}")
        (source_root / "b" / "stable.txt").write_text("stable")
        manifests.append(snapshot(LocalFolderSource(source_root), locations)[0])
    later = utc_now() + timedelta(days=60)
    policy = retention.RetentionPolicy(days=30, keep_min=3)
    for location in locations:
        report = retention.apply(location, BackupType.STORAGE, policy, later, dry_run=False)
        assert sorted(report.deleted) == sorted(m.backup_id for m in manifests[:2])
        gc = collect_garbage(location, later, dry_run=False)
        assert gc.removed == 2  # "version 0" and "version 1"
        for manifest in manifests[2:]:
            assert verify_snapshot_blobs(location, manifest) == []


@pytest.mark.parametrize("lock", ["locks/snapshot-1.json", "locks/storage-snapshot.json"],
                         ids=["per-run lock", "lease of 0.2"])
def test_gc_does_nothing_while_another_run_holds_a_lock(tmp_path, locations, lock):
    (tmp_path / "source" / "b").mkdir(parents=True)
    (tmp_path / "source" / "b" / "x.txt").write_text("x")
    snapshot(LocalFolderSource(tmp_path / "source"), locations)
    local = locations[0]
    local.put_bytes("blobs/sha256/00/" + "0" * 64, b"orphan")
    local.put_bytes(lock, b'{"run_id": "running", "expires_at": "2999-01-01T00:00:00Z"}')
    later = utc_now() + timedelta(days=10)
    assert "of run running" in collect_garbage(local, later, dry_run=False).skipped_reason
    local.delete(lock)
    assert collect_garbage(local, later, dry_run=False).removed == 1
    assert list(local.iter_objects("locks/")) == []


def test_a_snapshot_reusing_a_blob_while_gc_runs_keeps_it(tmp_path, monkeypatch):
    """GC has listed an unreferenced blob and is about to delete it when a snapshot that stores the
    same content starts: the snapshot waits for GC's lock, GC sees the snapshot's lock right before
    deleting and stops, and the snapshot's blob is there."""
    import threading

    monkeypatch.setattr("bhv360_backup.repository.locks.POLL_SECONDS", 0.05)
    root = tmp_path / "backups"
    orphan = b"certificate scanned twice"
    sha = hashlib.sha256(orphan).hexdigest()
    LocalLocation(root).put_bytes(blob_key(sha), orphan)  # left by a snapshot retention removed
    (tmp_path / "source" / "b").mkdir(parents=True)
    (tmp_path / "source" / "b" / "scan.pdf").write_bytes(orphan)
    finished = {}

    def take():
        finished["manifest"] = snapshot(LocalFolderSource(tmp_path / "source"), [LocalLocation(root)])[0]

    runner = threading.Thread(target=take)

    class SnapshotStartsWhileGcLists(LocalLocation):
        def iter_objects(self, prefix):
            listed = list(super().iter_objects(prefix))
            if prefix == "blobs/" and not runner.is_alive():
                runner.start()
                while runner.is_alive() and not [o for o in super().iter_objects("locks/") if "snapshot-" in o.key]:
                    pass
            return iter(listed)

    report = collect_garbage(SnapshotStartsWhileGcLists(root), utc_now() + timedelta(days=3), dry_run=False)
    runner.join(timeout=30)

    assert report.removed == 0 and "appeared" in report.skipped_reason
    assert verify_snapshot_blobs(LocalLocation(root), finished["manifest"]) == []
    assert LocalLocation(root).read_bytes(blob_key(sha)) == orphan


def test_blobs_under_object_lock_are_written_once_with_their_retention(tmp_path, s3):
    from bhv360_backup.locations import ObjectLock

    client = s3.client()
    client.create_bucket(Bucket="locked", ObjectLockEnabledForBucket=True,
                         CreateBucketConfiguration={"LocationConstraint": S3_REGION})
    cloud = S3Location(client, "locked", lock=ObjectLock("GOVERNANCE", 2))
    calls = []
    client.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    source = tmp_path / "source"
    (source / "b").mkdir(parents=True)
    for i in range(5):
        (source / "b" / f"doc {i}.pdf").write_bytes(f"%PDF {i}".encode() * 1000)
    (source / "b" / "large.bin").write_bytes(os.urandom(9 << 20))  # past one part: a multipart upload

    manifest, stats = snapshot(LocalFolderSource(source), [cloud])

    blobs = list(cloud.iter_objects(BLOB_PREFIX))
    assert len(blobs) == 6 and stats.downloaded == 6
    for blob in blobs:
        assert cloud.locked_until(blob.key) is not None, f"{blob.key} has no Object Lock retention"
    assert "CopyObject" not in calls
    deleted = []
    client.meta.events.register("before-parameter-build.s3.DeleteObject", lambda params, **_: deleted.append(params["Key"]))
    report = retention.apply(cloud, BackupType.STORAGE, retention.RetentionPolicy(days=1, keep_min=0),
                             utc_now() + timedelta(days=30), dry_run=False)
    assert report.errors == [] and report.deleted == [] and report.kept == [manifest.backup_id]  # still locked
    assert collect_garbage(cloud, utc_now() + timedelta(days=30), dry_run=False).removed == 0
    assert all(key.startswith("locks/") for key in deleted)


def test_a_reused_blob_stays_locked_as_long_as_the_backup_that_reuses_it(tmp_path, s3):
    from bhv360_backup.locations import ObjectLock

    client = s3.client()
    client.create_bucket(Bucket="locked", ObjectLockEnabledForBucket=True,
                         CreateBucketConfiguration={"LocationConstraint": S3_REGION})
    source = tmp_path / "source"
    (source / "b").mkdir(parents=True)
    (source / "b" / "plan.pdf").write_bytes(b"%PDF floor plan")
    snapshot(LocalFolderSource(source), [S3Location(client, "locked", lock=ObjectLock("GOVERNANCE", 2))])
    (blob,) = S3Location(client, "locked").iter_objects(BLOB_PREFIX)
    assert S3Location(client, "locked").locked_until(blob.key) < utc_now() + timedelta(days=3)

    longer = S3Location(client, "locked", lock=ObjectLock("GOVERNANCE", 10))
    manifest, stats = snapshot(LocalFolderSource(source), [longer])  # reuses the blob: less than half its lock left

    assert stats.reused == 1
    assert longer.locked_until(blob.key) > utc_now() + timedelta(days=9)
    (entry,) = read_index(longer, manifest)
    assert entry.locked_until is not None
    calls = []
    client.meta.events.register("before-call.s3.PutObjectRetention", lambda model, **_: calls.append(model.name))
    snapshot(LocalFolderSource(source), [longer])
    assert calls == []  # more than half of the lock left: no request


def test_retention_aborts_every_stale_upload_of_the_bucket(s3):
    from bhv360_backup.locations import S3Location as Cloud

    cloud = Cloud(s3.client(), BUCKET)
    for key in ("blobs/sha256/ab/" + "ab" * 32, "database/20261101T000000Z/database.dump", "audit/2026-Q3/report.pdf"):
        s3.client().create_multipart_upload(Bucket=BUCKET, Key=key)
    retention.apply(cloud, BackupType.DATABASE, retention.RetentionPolicy(days=30, keep_min=3),
                    utc_now() + timedelta(days=2), dry_run=False)
    assert s3.client().list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_retry_copies_a_finished_snapshot_with_its_blobs_to_the_other_location(tmp_path, locations):
    (tmp_path / "source" / "b").mkdir(parents=True)
    (tmp_path / "source" / "b" / "x.txt").write_text("x")
    local, cloud = locations
    writer = BackupWriter([local], BackupType.STORAGE, "20261102T000000Z")
    manifest, _ = take_snapshot(LocalFolderSource(tmp_path / "source"), writer, dag_id="t", run_id="t")

    retry = BackupWriter(locations, BackupType.STORAGE, "20261102T000000Z")
    again, _ = take_snapshot(LocalFolderSource(tmp_path / "source"), retry, dag_id="t", run_id="t")
    assert again.to_bytes() == manifest.to_bytes()
    assert verify_snapshot_blobs(cloud, manifest) == []


def test_a_snapshot_without_the_blob_rows_of_0_2_still_verifies_dedupes_and_collects(storage_api, locations):
    import dataclasses

    from bhv360_backup.repository.snapshots import BLOBS_ARTIFACT

    fill(storage_api)
    source = SupabaseStorageSource(storage_api.url, SERVICE_KEY)
    manifest, _ = snapshot(source, locations)
    older = dataclasses.replace(manifest, artifacts=tuple(a for a in manifest.artifacts if a.path != BLOBS_ARTIFACT))
    for location in locations:
        write_manifest(location, older)  # as version 0.1.0 wrote it
        assert verify_snapshot_blobs(location, older) == []

    _, stats = snapshot(source, locations)

    assert (stats.downloaded, stats.reused) == (0, 33)
    report = collect_garbage(locations[0], utc_now() + timedelta(days=3), dry_run=True)
    assert report.skipped_reason is None and report.removed == 0


class CountingSource(StorageSource):
    """``count`` small objects per bucket, generated as they are listed; records how far the listing
    had got when the first object was opened. ``broken`` buckets fail after listing a few objects."""

    def __init__(self, buckets, count, broken=()):
        self.buckets, self.count, self.broken = buckets, count, set(broken)
        self.listed = 0
        self.listed_at_first_open = None

    def describe(self):
        return "counting source"

    def list_buckets(self):
        return [BucketInfo(bucket) for bucket in self.buckets]

    def list_objects(self, bucket):
        for i in range(self.count):
            if bucket in self.broken and i == 5:
                raise BackupError(f"listing {bucket} failed halfway")
            self.listed += 1
            yield ObjectInfo(bucket, f"item {i:05d}", 8, f"etag-{i}", "2026-11-01T00:00:00Z")

    def open_object(self, obj):
        if self.listed_at_first_open is None:
            self.listed_at_first_open = self.listed
        return OpenedObject(iter([f"{obj.path:>8}"[-8:].encode()]), "text/plain", None)


def test_objects_are_copied_while_the_listing_goes_on_in_bounded_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(storage_producer, "LISTING_DEPTH", 50)
    source = CountingSource(["a", "b"], 1500)
    manifest, stats = snapshot(source, [LocalLocation(tmp_path / "backups")], parallelism=2)
    assert stats.downloaded == 3000 and manifest.details["objects"] == 3000
    # listed ahead: the queue, one batch, the transfers in flight and one per listing thread, not everything
    ahead = 50 + storage_producer.BATCH + 2 * TASKS_AHEAD + 2 + 2
    assert source.listed_at_first_open <= ahead < 3000


def test_a_listing_that_fails_fails_the_snapshot_and_stops_the_other_listings(tmp_path):
    source = CountingSource(["a", "b", "c"], 100_000, broken=["b"])
    location = LocalLocation(tmp_path / "backups")
    with pytest.raises(BackupError, match="listing b failed halfway"):
        snapshot(source, [location], parallelism=3)
    assert source.listed < 3 * 100_000 and list_backups(location, BackupType.STORAGE) == []


def test_the_index_is_in_name_order_whatever_the_names(tmp_path):
    names = ["Z.txt", "a.txt", "é.txt", "\U0001f600.txt", "b/c.txt", "b-c.txt", "B.txt", "ß/x", "a b.txt"]
    for bucket in ("zeta", "alpha"):
        for name in names:
            (tmp_path / "buckets" / bucket / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "buckets" / bucket / name).write_bytes(name.encode())
    location = LocalLocation(tmp_path / "backups")
    manifest, _ = snapshot(LocalFolderSource(tmp_path / "buckets"), [location])
    listed = [(entry.bucket, entry.path) for entry in read_index(location, manifest)]
    assert listed == sorted((bucket, name) for bucket in ("zeta", "alpha") for name in names)
    blob_rows = list(read_blob_rows(location, manifest))
    assert [row["sha256"] for row in blob_rows] == [entry.sha256 for entry in read_index(location, manifest)]


class SlowSource(CountingSource):
    """Each object takes a while to read, as a large one over a slow link would."""

    def open_object(self, obj):
        time.sleep(0.05)
        return super().open_object(obj)


class FlushRecordingLocation(LocalLocation):
    def __init__(self, root):
        super().__init__(root)
        self.flushed_with_blobs = []  # how many blobs the location held at each flush

    def flush(self):
        self.flushed_with_blobs.append(sum(1 for _ in self.iter_objects("blobs/")))
        super().flush()


def test_blobs_are_written_back_while_the_snapshot_stores_them_not_all_at_its_end(tmp_path, monkeypatch):
    monkeypatch.setattr(storage_producer, "WRITE_BACK_EVERY", 0.1)
    location = FlushRecordingLocation(tmp_path / "backups")
    _, stats = snapshot(SlowSource(["a"], 40), [location], parallelism=2)
    assert stats.downloaded == 40
    during, at_the_end = location.flushed_with_blobs[:-1], location.flushed_with_blobs[-1]
    assert at_the_end == 40 and len(during) >= 3 and any(0 < held < 40 for held in during)


class FreezeRecordingSource(CountingSource):
    """Records whether the collector had frozen objects while the bucket was listed."""

    frozen_while_listing: int | None = None

    def list_objects(self, bucket):
        self.frozen_while_listing = gc.get_freeze_count()
        yield from super().list_objects(bucket)


@pytest.mark.parametrize("broken", [[], ["a"]], ids=["completed", "failed"])
def test_the_objects_alive_before_a_snapshot_are_frozen_during_it_and_released_after(tmp_path, broken):
    source = FreezeRecordingSource(["a"], 20, broken=broken)
    if broken:
        with pytest.raises(BackupError, match="listing a failed"):
            snapshot(source, [LocalLocation(tmp_path / "backups")])
    else:
        snapshot(source, [LocalLocation(tmp_path / "backups")])
    assert source.frozen_while_listing > 1000 and gc.get_freeze_count() == 0


def test_objects_the_host_froze_stay_frozen_after_a_snapshot(tmp_path):
    gc.freeze()  # as Airflow's executors do before forking a worker
    try:
        frozen = gc.get_freeze_count()
        snapshot(FreezeRecordingSource(["a"], 20), [LocalLocation(tmp_path / "backups")])
        assert gc.get_freeze_count() > frozen // 2  # not released (a frozen object freed meanwhile leaves it)
    finally:
        gc.unfreeze()


class WaitingFolderSource(LocalFolderSource):
    """Opens its first ``before`` objects at once, then each waits until ``event`` is set."""

    def __init__(self, root, before, event):
        super().__init__(root)
        self.before, self.event, self.opened = before, event, 0

    def open_object(self, obj):
        self.opened += 1
        if self.opened > self.before:
            self.event.wait(10)
        return super().open_object(obj)


@pytest.mark.parametrize("written_back", ["at the flush before the index", "by the kernel before it",
                                          "at a flush while blobs are still stored"])
def test_blobs_the_disk_never_wrote_drop_the_local_copy_and_the_s3_copy_completes(tmp_path, s3, monkeypatch, written_back):
    """Every write of the blobs succeeds into the page cache, but the disk fails them when they are
    written back (and has room again right after, so the index would be written fine): the local
    location drops out naming it and publishes nothing, the S3 copy completes, and the run fails.
    Written back by the kernel on its own before the flush (here: a sync), with room again before the
    flush, the loss is still reported (the kernel keeps a write-back error for the first who asks).
    Found by a flush of the thread that writes blobs back as they come, the local copy drops out then,
    and the blobs still to come go to S3 only."""
    source = tmp_path / "source" / "incident-photos"
    source.mkdir(parents=True)
    for i in range(40):
        (source / f"photo-{i}.jpg").write_bytes(os.urandom(1 << 20))
    found_while_stored = threading.Event()
    with disk_losing_write_back(tmp_path / "disk") as disk:
        flush = LocalLocation.flush

        def room_again_after_the_write_back(location):
            if written_back == "by the kernel before it":
                os.sync()
                disk.make_room()
                flush(location)
            elif written_back == "at a flush while blobs are still stored":
                try:
                    flush(location)
                except BackupError:
                    disk.make_room()
                    found_while_stored.set()
                    raise
            else:
                try:
                    flush(location)
                finally:
                    disk.make_room()

        monkeypatch.setattr(LocalLocation, "flush", room_again_after_the_write_back)
        during = written_back == "at a flush while blobs are still stored"
        monkeypatch.setattr(storage_producer, "WRITE_BACK_EVERY", 0.05 if during else 3600)
        local, cloud = LocalLocation(disk.folder / "backups"), S3Location(s3.client(), BUCKET)
        writer = BackupWriter([local, cloud], BackupType.STORAGE, next(_ids))
        # while blobs are still stored: the last 10 wait until a flush has found the loss (25 MB is past the disk)
        source_folder = (WaitingFolderSource(tmp_path / "source", 30, found_while_stored) if during
                         else LocalFolderSource(tmp_path / "source"))
        manifest, stats = take_snapshot(source_folder, writer, dag_id="test", run_id="test", parallelism=2)
        assert stats.downloaded == 40
        assert "making the blobs durable" in writer.failures["local"]
        assert "No space left on device" in writer.failures["local"] or "Input/output error" in writer.failures["local"]
        assert list_backups(local, BackupType.STORAGE) == []
        assert list_backups(cloud, BackupType.STORAGE) == [manifest.backup_id]
        assert verify_snapshot_blobs(cloud, manifest) == []
        if during:
            assert found_while_stored.is_set()
            assert sum(1 for _ in local.iter_objects("blobs/")) < 40  # the later blobs went to S3 only
        with pytest.raises(BackupError, match="local"):
            writer.raise_for_failures()
