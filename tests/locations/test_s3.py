from __future__ import annotations

import hashlib
import os

import pytest

from bhv360_backup.locations import S3Location
from bhv360_backup.locations.s3 import MIN_PART_SIZE, part_size
from bhv360_backup.repository.catalog import (
    delete_backup,
    list_backups,
    write_manifest,
)
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.streams import copy_stream
from tests.conftest import BUCKET
from tests.fixtures.s3 import MAINTENANCE_PAGE, listing_page
from tests.locations.conftest import make_manifest


def test_part_size_keeps_several_hundred_gb_under_10000_parts():
    assert part_size(1) == part_size(1000) == 8 << 20
    assert part_size(1001) == 16 << 20
    assert sum(part_size(n) for n in range(1, 10_001)) > 5 * (1 << 40)  # S3's 5 TiB object limit


def test_multipart_stream_round_trip(s3):
    location = S3Location(s3.client(), BUCKET)
    data = os.urandom(MIN_PART_SIZE * 2 + 12345)
    chunks = [data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)]
    result = copy_stream(chunks, {"s3": location.open_writer("database/20260101T000000Z/big.dump")})
    assert not result.failed and result.sha256 == hashlib.sha256(data).hexdigest()
    assert location.size_of("database/20260101T000000Z/big.dump") == len(data)
    assert b"".join(location.read_chunks("database/20260101T000000Z/big.dump")) == data


def test_a_failed_stream_leaves_no_object_and_no_open_upload(s3):
    location = S3Location(s3.client(), BUCKET)

    def broken():
        yield os.urandom(MIN_PART_SIZE + 1)
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError):
        copy_stream(broken(), {"s3": location.open_writer("database/20260101T000000Z/big.dump")})
    client = s3.client()
    assert client.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_uploads_carry_checksums_encryption_and_object_lock(s3):
    from datetime import datetime, timedelta, timezone

    from bhv360_backup.locations import BackupLocked, ObjectLock
    from bhv360_backup.repository import retention

    client = s3.client()
    client.create_bucket(Bucket="locked-backups", ObjectLockEnabledForBucket=True,
                         CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    location = S3Location(client, "locked-backups", {"ServerSideEncryption": "AES256"}, ObjectLock("COMPLIANCE", 30))
    big = os.urandom(MIN_PART_SIZE + 100)
    for backup_id in ("20260101T000000Z", "20260102T000000Z", "20260103T000000Z", "20260104T000000Z"):
        copy_stream([big], {"s3": location.open_writer(f"database/{backup_id}/database.dump")})
        write_manifest(location, make_manifest(backup_id))
    head = client.head_object(Bucket="locked-backups", Key="database/20260101T000000Z/manifest.json")
    assert head["ObjectLockMode"] == "COMPLIANCE" and head["ServerSideEncryption"] == "AES256"
    assert head["ObjectLockRetainUntilDate"] > datetime.now(timezone.utc) + timedelta(days=29)
    checked = client.head_object(Bucket="locked-backups", Key="database/20260101T000000Z/manifest.json",
                                 ChecksumMode="ENABLED")
    assert checked["ChecksumSHA256"]
    dump = client.head_object(Bucket="locked-backups", Key="database/20260101T000000Z/database.dump")
    assert dump["ObjectLockMode"] == "COMPLIANCE" and dump["ContentLength"] == len(big)

    with pytest.raises(BackupLocked, match="locked until"):
        delete_backup(location, BackupType.DATABASE, "20260101T000000Z")
    later = datetime.now(timezone.utc) + timedelta(days=400)
    report = retention.apply(location, BackupType.DATABASE, retention.RetentionPolicy(30, 3), later, dry_run=False)
    assert report.deleted == [] and "20260101T000000Z" in report.kept and report.errors == []
    assert list_backups(location, BackupType.DATABASE)[0] == "20260101T000000Z"


@pytest.mark.parametrize("size", [1000, MIN_PART_SIZE * 2 + 12345])
def test_the_receipt_proves_the_stored_bytes_without_a_download(s3, size):
    location = S3Location(s3.client(), BUCKET)
    key = "database/20260101T000000Z/database.dump"
    data = os.urandom(size)
    writer = location.open_writer(key)
    copy_stream([data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)], {"s3": writer})
    receipt = writer.receipt()
    assert receipt and location.confirms(key, size, receipt)
    assert not location.confirms(key, size + 1, receipt)

    s3.client().put_object(Bucket=BUCKET, Key=key, Body=os.urandom(size), ChecksumAlgorithm="SHA256")  # replaced
    assert not location.confirms(key, size, receipt)
    s3.client().delete_object(Bucket=BUCKET, Key=key)
    assert not location.confirms(key, size, receipt)


def test_a_backup_verifies_its_cloud_copy_by_checksum_and_a_damaged_one_by_reading_it(s3, tmp_path, monkeypatch):
    from bhv360_backup.locations import LocalLocation
    from bhv360_backup.repository.writer import BackupWriter

    reads: list[str] = []
    cloud = S3Location(s3.client(), BUCKET)
    original = S3Location.read_chunks
    monkeypatch.setattr(S3Location, "read_chunks", lambda self, key, *a: reads.append(key) or original(self, key, *a))
    data = os.urandom(MIN_PART_SIZE + 5)

    writer = BackupWriter([LocalLocation(tmp_path), cloud], BackupType.DATABASE, "20260101T000000Z")
    writer.add("database.dump", [data])
    writer.verify()
    assert reads == [] and writer.failures == {}

    damaged = BackupWriter([LocalLocation(tmp_path / "2"), cloud], BackupType.DATABASE, "20260102T000000Z")
    damaged.add("database.dump", [data])
    key = "database/20260102T000000Z/database.dump"
    s3.client().put_object(Bucket=BUCKET, Key=key, Body=os.urandom(len(data)))  # bit rot after the upload
    damaged.verify()
    assert reads == [key] and "sha256" in damaged.failures["s3"]


def test_a_restore_plan_trusts_s3s_recorded_checksum_and_still_catches_a_replaced_object(s3, tmp_path, monkeypatch):
    from bhv360_backup.repository.writer import BackupWriter
    from bhv360_backup.restore.plan import choose_copy

    reads: list[str] = []
    cloud = S3Location(s3.client(), BUCKET)
    original = S3Location.read_chunks
    monkeypatch.setattr(S3Location, "read_chunks", lambda self, key, *a: reads.append(key) or original(self, key, *a))
    writer = BackupWriter([cloud], BackupType.CONFIG, "20260101T000000Z")
    artifact = writer.add("config.json", [b'{"settings": []}'])
    writer.verify()
    writer.publish(dag_id="d", run_id="r", details={})
    assert artifact.s3_checksum

    assert choose_copy([cloud], BackupType.CONFIG, "20260101T000000Z", None).location == "s3"
    assert reads == ["config/20260101T000000Z/manifest.json"]  # config.json itself was not downloaded

    s3.client().put_object(Bucket=BUCKET, Key="config/20260101T000000Z/config.json", Body=b'{"settings": [1]}')
    with pytest.raises(Exception, match="no intact copy"):
        choose_copy([cloud], BackupType.CONFIG, "20260101T000000Z", None)


def test_a_listing_page_of_another_document_is_retried_not_read_as_no_objects(scripted_s3):
    scripted_s3.bodies = [MAINTENANCE_PAGE, listing_page(BUCKET, "blobs/plain/ab/ab12")]
    listed = list(S3Location(scripted_s3.client, BUCKET).iter_objects("blobs/"))
    assert [item.key for item in listed] == ["blobs/plain/ab/ab12"] and len(scripted_s3.requests) == 2
