"""The three storage sources list and stream objects; the Supabase one through the real client."""

from __future__ import annotations

import gzip
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from bhv360_backup.errors import BackupError
from bhv360_backup.s3_listing import listing_timestamp
from bhv360_backup.sources.storage import (
    LocalFolderSource,
    NativeS3Reader,
    ObjectGone,
    S3StorageSource,
    SupabaseStorageSource,
    native_addressable,
)
from tests.fixtures.s3 import ERROR_WITH_200, MAINTENANCE_PAGE, listing_page
from tests.fixtures.supabase_storage import SERVICE_KEY


def supabase_source(server, buckets=None):
    return SupabaseStorageSource(server.url, SERVICE_KEY, buckets)


def test_supabase_walks_nested_folders_and_pages_past_1000(storage_api):
    storage_api.create_bucket("certificates", public=False, file_size_limit=5_000_000,
                              allowed_mime_types=["application/pdf"])
    for i in range(1203):
        storage_api.put("certificates", f"bulk/file {i:04d} (copy).pdf", b"%PDF" + str(i).encode(), "application/pdf")
    storage_api.put("certificates", "a/b/c/deep.pdf", b"deep", "application/pdf")
    storage_api.put("certificates", "empty.txt", b"", "text/plain")

    source = supabase_source(storage_api)
    (bucket,) = source.list_buckets()
    assert bucket.to_dict() == {"id": "certificates", "public": False, "file_size_limit": 5_000_000,
                                "allowed_mime_types": ["application/pdf"]}
    objects = {obj.path: obj for obj in source.list_objects("certificates")}
    assert len(objects) == 1205
    assert objects["empty.txt"].size == 0 and objects["a/b/c/deep.pdf"].content_type == "application/pdf"
    opened = source.open_object(objects["bulk/file 0042 (copy).pdf"])
    assert b"".join(opened.chunks) == b"%PDF42"
    assert opened.content_type == "application/pdf"


def many_small_folders(storage_api, count: int) -> None:
    storage_api.create_bucket("incident-photos")
    for i in range(count):
        storage_api.put("incident-photos", f"org-{i % 7}/incident-{i}/photo.jpg", b"jpg" + str(i).encode(), "image/jpeg")
        storage_api.put("incident-photos", f"org-{i % 7}/incident-{i}/notes/report.txt", b"n", "text/plain")


def test_supabase_lists_several_folders_at_a_time(storage_api):
    many_small_folders(storage_api, 40)
    storage_api.list_delay_s = 0.02
    storage_api.failing_paths_every = 5  # some folders answer 429 then 503 first: retried, none left out

    listed = [obj.path for obj in supabase_source(storage_api).list_objects("incident-photos")]

    assert sorted(listed) == sorted(path for bucket, path in storage_api.objects if bucket == "incident-photos")
    assert len(listed) == 80
    assert storage_api.most_lists_at_once > 1


def test_supabase_listing_fails_whole_when_one_folder_cannot_be_listed(storage_api):
    many_small_folders(storage_api, 20)
    storage_api.refused_list_prefix = "org-3/incident-10/notes"

    with pytest.raises(BackupError, match="listing incident-photos/org-3/incident-10/notes: listing refused"):
        list(supabase_source(storage_api).list_objects("incident-photos"))


def test_supabase_refuses_a_wrong_key_with_a_clear_error(storage_api):
    storage_api.create_bucket("x")
    with pytest.raises(BackupError, match="Supabase Storage listing buckets"):
        SupabaseStorageSource(storage_api.url, "eyJ.wrong.key").list_buckets()


def test_supabase_object_deleted_after_listing_is_gone(storage_api):
    storage_api.create_bucket("x")
    storage_api.put("x", "doomed.png", b"png")
    source = supabase_source(storage_api)
    (obj,) = source.list_objects("x")
    storage_api.delete("x", "doomed.png")
    with pytest.raises(ObjectGone):
        source.open_object(obj)


def test_test_server_refuses_non_ascii_keys_like_the_real_one(storage_api):
    storage_api.create_bucket("x")
    with pytest.raises(ValueError, match="InvalidKey"):
        storage_api.put("x", "café.png", b"png")


def s3_source_from_connection(s3, monkeypatch, reads="obstore"):
    """The S3 source as a deployment makes it: variable bhv360_storage_source = s3:<conn id>."""
    from bhv360_backup.runtime import storage_source
    from bhv360_backup.settings import Settings

    monkeypatch.setenv("AIRFLOW_CONN_BHV360_SOURCE_S3", s3.connection_json())
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_STORAGE_S3_READS", reads)
    return storage_source(Settings.load(), "s3:bhv360_source_s3")


@pytest.mark.parametrize("reads", ["obstore", "boto3"])
def test_s3_source_lists_and_reads_non_ascii_names(s3, monkeypatch, reads):
    client = s3.client()
    client.create_bucket(Bucket="photos", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    client.put_object(Bucket="photos", Key="ontruiming café/foto 1.jpg", Body=b"jpeg", ContentType="image/jpeg",
                      CacheControl="max-age=60")
    big = bytes(range(256)) * 12_000  # three chunks
    client.put_object(Bucket="photos", Key="scan.pdf", Body=big)
    zipped = gzip.compress(b"incident report " * 1000)  # stored compressed: read as stored, never inflated
    client.put_object(Bucket="photos", Key="report.txt", Body=zipped, ContentEncoding="gzip")
    source = s3_source_from_connection(s3, monkeypatch, reads)
    assert (source.native is not None) == (reads == "obstore")
    photo, report, scan = sorted(source.list_objects("photos"), key=lambda obj: obj.path)
    default = S3StorageSource(client, ["photos"])  # botocore's own timestamp parser: the same listing
    assert sorted(default.list_objects("photos"), key=lambda obj: obj.path) == [photo, report, scan]
    assert b"".join(source.open_object(report).chunks) == zipped
    assert photo.path == "ontruiming café/foto 1.jpg"
    opened = source.open_object(photo)
    assert b"".join(opened.chunks) == b"jpeg"
    assert (opened.content_type, opened.cache_control) == ("image/jpeg", "max-age=60")
    assert b"".join(source.open_object(scan).chunks) == big
    client.delete_object(Bucket="photos", Key="scan.pdf")
    with pytest.raises(ObjectGone):
        source.open_object(scan)


def test_s3_source_refused_by_the_server_is_not_retried_as_transient(s3, monkeypatch):
    client = s3.client()
    client.create_bucket(Bucket="photos", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    client.put_object(Bucket="photos", Key="a.jpg", Body=b"jpeg")
    source = s3_source_from_connection(s3, monkeypatch)
    (obj,) = source.list_objects("photos")
    source.native._credentials = lambda: {"access_key_id": "bench", "secret_access_key": "wrong"}
    source.native._stores.clear()
    with pytest.raises(BackupError, match="the S3 source refused the read") as refused:
        source.open_object(obj)
    assert type(refused.value) is BackupError


@pytest.mark.fast
@pytest.mark.parametrize(("key", "addressable"), [
    ("ok/normal name.txt", True), ("ontruiming café/foto 1.jpg", True), ("back\\slash.txt", True),
    ("%2e%2e/encoded.txt", True), ("../../escape.txt", False), ("a/../b.txt", False), ("dir/./dot.txt", False),
    ("/absolute.txt", False), ("folder-marker/", False), ("a//b.txt", False), ("nul\x00byte.txt", False),
    ("del\x7fchar.txt", False)])
def test_keys_obstore_would_refuse_or_rewrite_are_read_by_boto3(key, addressable):
    assert native_addressable(key) is addressable


def test_local_source_lists_non_ascii_names(tmp_path):
    (tmp_path / "photos" / "café").mkdir(parents=True)
    (tmp_path / "photos" / "café" / "foto 1.png").write_bytes(b"png")
    source = LocalFolderSource(tmp_path)
    assert [b.id for b in source.list_buckets()] == ["photos"]
    (obj,) = source.list_objects("photos")
    assert obj.path == "café/foto 1.png" and obj.content_type == "image/png"


def test_local_source_lists_regular_files_at_every_depth_and_no_links(tmp_path):
    (tmp_path / "docs" / "a" / "b").mkdir(parents=True)
    (tmp_path / "docs" / "top.pdf").write_bytes(b"1")
    (tmp_path / "docs" / "a" / "b" / "deep.pdf").write_bytes(b"22")
    (tmp_path / "docs" / "link.pdf").symlink_to(tmp_path / "docs" / "top.pdf")
    (tmp_path / "docs" / "linked-folder").symlink_to(tmp_path / "docs" / "a")
    listed = {obj.path: obj for obj in LocalFolderSource(tmp_path).list_objects("docs")}
    assert sorted(listed) == ["a/b/deep.pdf", "top.pdf"]
    info = (tmp_path / "docs" / "a" / "b" / "deep.pdf").stat()
    assert listed["a/b/deep.pdf"].etag == f"{info.st_mtime_ns:x}-2" and listed["a/b/deep.pdf"].size == 2


@pytest.mark.fast
def test_listing_timestamps_are_read_as_botocore_reads_them():
    from botocore.utils import parse_timestamp

    for value in ("2026-12-05T22:29:16.123Z", "2026-12-05T22:29:16Z", "2026-12-05T23:29:16.5+01:00",
                  "Sat, 05 Dec 2026 22:29:16 GMT", "1796510956"):
        assert listing_timestamp(value) == parse_timestamp(value), value


def test_the_native_reader_makes_one_store_per_bucket_however_many_threads_ask(monkeypatch):
    import obstore.store

    made = []
    real = obstore.store.S3Store

    def counted(bucket, **options):
        made.append(bucket)
        time.sleep(0.01)  # as long as a store takes to make, so the threads meet
        return real(bucket, **options)

    monkeypatch.setattr(obstore.store, "S3Store", counted)
    reader = NativeS3Reader(endpoint="http://127.0.0.1:9", region="eu-west-1", path_style=True,
                            credentials=lambda: {"access_key_id": "a", "secret_access_key": "b"})
    with ThreadPoolExecutor(8) as pool:
        stores = list(pool.map(reader._store, ["photos"] * 8 + ["plans"] * 8))
    assert sorted(made) == ["photos", "plans"] and len({id(store) for store in stores}) == 2


LISTING_PAGE = listing_page("docs", "plan.pdf")
BUCKETS_PAGE = ('<?xml version="1.0" encoding="UTF-8"?>\n<ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                "<Owner><ID>o</ID></Owner><Buckets><Bucket><Name>docs</Name>"
                "<CreationDate>2026-12-06T10:00:00.000Z</CreationDate></Bucket></Buckets></ListAllMyBucketsResult>")


@pytest.mark.parametrize("bad_page", [ERROR_WITH_200, LISTING_PAGE[:-40], MAINTENANCE_PAGE],
                         ids=["error-sent-with-200", "page-cut-short", "other-document"])
def test_a_listing_page_that_is_not_one_whole_listing_is_retried_never_read_as_empty(scripted_s3, bad_page):
    scripted_s3.bodies = [bad_page, LISTING_PAGE]
    listed = list(S3StorageSource(scripted_s3.client, ["docs"]).list_objects("docs"))
    assert [obj.path for obj in listed] == ["plan.pdf"] and len(scripted_s3.requests) == 2

    scripted_s3.bodies = [bad_page] * 3  # the first try and the client's two retries
    with pytest.raises(ClientError, match="ListObjectsV2 operation .reached max retries"):
        list(S3StorageSource(scripted_s3.client, ["docs"]).list_objects("docs"))
    assert scripted_s3.bodies == []


def test_the_other_s3_responses_keep_botocores_own_check_for_an_error_sent_with_200(scripted_s3):
    scripted_s3.bodies = [ERROR_WITH_200, BUCKETS_PAGE]
    assert [bucket.id for bucket in S3StorageSource(scripted_s3.client).list_buckets()] == ["docs"]
    assert len(scripted_s3.requests) == 2


def test_the_listing_model_is_loaded_once_per_source_not_once_per_bucket(scripted_s3, monkeypatch):
    made = []
    real = scripted_s3.client.get_paginator
    monkeypatch.setattr(scripted_s3.client, "get_paginator", lambda name: made.append(name) or real(name))
    source = S3StorageSource(scripted_s3.client, ["docs", "plans"])
    scripted_s3.bodies = [LISTING_PAGE, LISTING_PAGE]
    for bucket in source.list_buckets():
        assert [obj.path for obj in source.list_objects(bucket.id)] == ["plan.pdf"]
    assert made == ["list_objects_v2"]
