"""Incremental backups against a real cluster with wal_level = logical: segments in both locations, a
chain from a dump taken while transactions committed, and restores to three moments compared table by
table with what the source held then."""

from __future__ import annotations

import itertools
import threading
import time

import psycopg
import pytest

from bhv360_backup.errors import BackupError
from bhv360_backup.locations import LocalLocation, S3Location
from bhv360_backup.producers.incremental import capture_segment
from bhv360_backup.repository.catalog import scan_backups
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import parse_iso
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.sources.changes import ChangeSource
from tests.conftest import AGE_IDENTITY, BUCKET
from tests.fixtures import chain, postgres
from tests.fixtures.chain import SLOT, capture, dump, next_id, restore_to, run
from tests.fixtures.storage_chain import StorageChain

TABLES = ("public.incidents", "public.big", "public.log_lines", "public.filler", "public.counters")

SCHEMA = """
CREATE TABLE incidents (id bigserial PRIMARY KEY, org int NOT NULL, title text, notes text,
                        at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE big (id int PRIMARY KEY, kind text, payload text);
CREATE TABLE log_lines (line text);
CREATE TABLE filler (id int PRIMARY KEY, v text);
CREATE TABLE counters (name text PRIMARY KEY, n numeric);
CREATE SEQUENCE certificate_numbers;
INSERT INTO filler SELECT g, md5(g::text) FROM generate_series(1, 200000) g;
INSERT INTO big VALUES (1, 'scan', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 4000) g));
INSERT INTO counters VALUES ('drills', 0.1234567890123456789);
"""


def state(target):
    return chain.state(target, TABLES)


@pytest.fixture(params=["plain", pytest.param("encrypted", marks=pytest.mark.server)])
def repo(request, tmp_path, s3):
    recipients = (AGE_IDENTITY.to_public(),) if request.param == "encrypted" else ()
    identities = (AGE_IDENTITY,) if request.param == "encrypted" else ()
    return [LocalLocation(tmp_path / "backups"), S3Location(s3.client(), BUCKET)], recipients, identities


def start_chain(target, locations, recipients):
    """The schema, the slot (its first capture) and a dump that starts the chain; returns the slot's source."""
    run(target, SCHEMA)
    source = ChangeSource(target, SLOT)
    capture(source, locations, recipients)
    dump(target, locations, recipients)
    return source


def test_restores_to_three_moments_equal_the_source_then(logical_db, logical_cluster, repo, tmp_path):
    locations, recipients, identities = repo
    run(logical_db, SCHEMA)
    source = ChangeSource(logical_db, SLOT)
    capture(source, locations, recipients)  # creates the slot: the chain can start at the next dump

    # a transaction open across the dump, and others committing while it runs
    spanning = psycopg.connect(host=logical_db.host, port=logical_db.port, user="postgres", dbname=logical_db.dbname)
    spanning.execute("INSERT INTO incidents (org, title) VALUES (9, 'begun before the dump')")
    stop = threading.Event()

    def writer():
        for n in itertools.count():
            if stop.is_set():
                return
            run(logical_db, f"INSERT INTO incidents (org, title) VALUES ({n % 3}, 'during the dump {n}')")

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.2)
    try:
        base = dump(logical_db, locations, recipients)
    finally:
        stop.set()
        thread.join()
    spanning.commit()
    spanning.close()
    assert base.details["chain"]["exists"] and base.details["chain"]["snapshot"]["xip"] is not None
    capture(source, locations, recipients)
    t1 = run(logical_db, "SELECT 1")
    state1 = state(logical_db)

    run(logical_db, "UPDATE incidents SET notes = 'evacuated' WHERE org = 1",
        "DELETE FROM incidents WHERE org = 2",
        "UPDATE big SET kind = 'scan, checked' WHERE id = 1",  # the TOASTed payload stays as it was
        "INSERT INTO big VALUES (2, 'plan', repeat('floor ', 50000))",
        "UPDATE counters SET n = n * 3",
        "INSERT INTO log_lines VALUES ('drill started'), (NULL)",
        "SELECT nextval('certificate_numbers') FROM generate_series(1, 7)")
    t2 = run(logical_db, "SELECT 1")
    state2 = state(logical_db)
    run(logical_db, "UPDATE big SET payload = payload || ' annotated' WHERE id = 2",
        "UPDATE incidents SET id = id + 100000 WHERE org = 0 AND id % 2 = 0")  # a key changes
    capture(source, locations, recipients)
    run(logical_db, "TRUNCATE log_lines", "INSERT INTO incidents (org, title) VALUES (5, 'after the last moment')")
    t3 = run(logical_db, "SELECT 1")
    state3 = state(logical_db)
    run(logical_db, "INSERT INTO incidents (org, title) VALUES (6, 'after t3')")
    capture(source, locations, recipients)

    for moment, expected in ((t1, state1), (t2, state2), (t3, state3)):
        target, plan, report = restore_to(logical_cluster, locations, identities, moment, tmp_path)
        try:
            assert state(target) == expected, f"restored to {moment}"
            replayed = report["database"]["point_in_time"]
            assert replayed["stopped"] is None and parse_iso(replayed["reflects"]) <= moment
            assert replayed["in_the_dump"] >= 1  # the dump's own transactions were not applied twice
        finally:
            postgres.drop_database(target)

    target, plan, report = restore_to(logical_cluster, locations, identities, None, tmp_path)  # latest
    try:
        assert state(target) == state(logical_db)  # the newest captured moment
        with psycopg.connect(host=target.host, port=target.port, user="postgres", dbname=target.dbname) as c:
            assert c.execute("SELECT last_value FROM certificate_numbers").fetchone()[0] >= 7
    finally:
        postgres.drop_database(target)


@pytest.mark.server
def test_a_capture_killed_before_moving_the_slot_is_captured_again_and_replays_exactly(
        logical_db, logical_cluster, repo, tmp_path):
    locations, recipients, identities = repo
    source = start_chain(logical_db, locations, recipients)
    run(logical_db, "INSERT INTO incidents (org, title) VALUES (1, 'a'), (1, 'b')", "UPDATE counters SET n = 2")
    written = capture(source, locations, recipients, advance=False)  # killed between writing and moving the slot
    run(logical_db, "DELETE FROM incidents WHERE title = 'a'")
    again = capture(source, locations, recipients)
    assert again.details["start_lsn"] == written.details["start_lsn"]  # the same changes, captured again
    target, plan, report = restore_to(logical_cluster, locations, identities, None, tmp_path)
    try:
        assert state(target) == state(logical_db)
    finally:
        postgres.drop_database(target)


@pytest.mark.server
def test_a_schema_change_stops_the_chain_and_a_table_without_a_key_stops_the_replay(
        logical_db, logical_cluster, repo, tmp_path):
    locations, recipients, identities = repo
    source = start_chain(logical_db, locations, recipients)
    run(logical_db, "INSERT INTO incidents (org, title) VALUES (1, 'kept')", "INSERT INTO log_lines VALUES ('x')")
    before_change = run(logical_db, "SELECT 1")
    expected = state(logical_db)
    capture(source, locations, recipients)
    run(logical_db, "ALTER TABLE incidents ADD COLUMN severity int", "INSERT INTO incidents (org, severity) VALUES (1, 3)")
    changed = capture(source, locations, recipients)
    assert changed.details["schema_changed"]["tables"] == ["public.incidents"]
    later = run(logical_db, "SELECT 1")

    with pytest.raises(BackupError, match="the schema or the access model changed.*public.incidents.*accept_earlier_point"):
        restore_to(logical_cluster, locations, identities, later, tmp_path)
    target, plan, report = restore_to(logical_cluster, locations, identities, later, tmp_path, accept_earlier=True)
    try:
        assert state(target) == expected and parse_iso(plan.components[0].chain["reaches"]) >= before_change
    finally:
        postgres.drop_database(target)

    run(logical_db, "UPDATE log_lines SET line = 'y'")  # no key: the update cannot be replayed exactly
    dump(logical_db, locations, recipients)
    run(logical_db, "INSERT INTO incidents (org, title) VALUES (2, 'fine')")
    exact_until = state(logical_db)
    run(logical_db, "DELETE FROM log_lines")
    segment = capture(source, locations, recipients)
    assert "public.log_lines" in segment.details["not_exact"]
    with pytest.raises(BackupError, match="stopped at .*public.log_lines has no primary key or replica identity.*"
                                          "accept_earlier_point"):
        restore_to(logical_cluster, locations, identities, None, tmp_path)  # the newest moment, not reached
    target, plan, report = restore_to(logical_cluster, locations, identities, None, tmp_path, accept_earlier=True)
    try:
        assert "public.log_lines has no primary key or replica identity" in report["database"]["point_in_time"]["stopped"]
        assert state(target) == exact_until
    finally:
        postgres.drop_database(target)


def test_a_source_without_logical_decoding_is_refused_naming_what_it_lacks(pg_database, repo):
    locations, recipients, _ = repo
    writer = BackupWriter(locations, BackupType.INCREMENTAL, next_id(), recipients)
    with pytest.raises(BackupError, match="wal_level is replica, change capture needs logical"):
        capture_segment(ChangeSource(pg_database, SLOT), writer, dag_id="t", run_id="t")
    assert all(scan_backups(location, BackupType.INCREMENTAL) == [] for location in locations)


def test_storage_objects_between_snapshots_and_a_storage_restore_to_a_point_in_time(
        logical_db, logical_cluster, storage_api, repo, tmp_path):
    locations, recipients, identities = repo
    files = StorageChain(logical_db, storage_api, locations, recipients, identities, tmp_path)
    files.upload("org-1/anna.pdf", b"%PDF anna")
    files.upload("org-1/bram.pdf", b"%PDF bram")
    files.start()

    files.upload("org-2/chris.pdf", b"%PDF chris, uploaded after the snapshot")
    t1 = run(logical_db, "SELECT 1")
    files.remove("org-1/anna.pdf")  # in the snapshot: named only by its id in the change stream
    t2 = run(logical_db, "SELECT 1")
    segment = files.capture()
    assert segment.details["storage"] == {"objects": 2, "stored": 1, "deleted": 1, "unavailable": 0, "bytes": 39}
    chris = "certificates/org-2/chris.pdf"
    assert files.restored_at(t1) == {"certificates/org-1/anna.pdf": b"%PDF anna",
                                     "certificates/org-1/bram.pdf": b"%PDF bram", chris: files.api_data(chris)}
    assert files.restored_at(t2) == {"certificates/org-1/bram.pdf": b"%PDF bram", chris: files.api_data(chris)}

    # a move is an UPDATE of the row that keeps its id (the stream names no old name): the old name is gone
    moved = storage_api.objects.pop(("certificates", "org-1/bram.pdf"))
    storage_api.objects[("certificates", "archive/bram.pdf")] = moved
    run(logical_db, f"UPDATE storage.objects SET name = 'archive/bram.pdf' WHERE id = '{moved['id']}'")
    t3 = run(logical_db, "SELECT 1")
    files.capture()
    assert files.restored_at(t3) == {"certificates/archive/bram.pdf": b"%PDF bram", chris: files.api_data(chris)}

    run(logical_db, "TRUNCATE storage.objects")  # every row gone at once: no delete per object in the stream
    t4 = run(logical_db, "SELECT 1")
    files.capture()
    assert files.restored_at(t4) == {}
    assert files.restored_at(t3) == {"certificates/archive/bram.pdf": b"%PDF bram", chris: files.api_data(chris)}


def test_a_storage_version_never_captured_refuses_a_restore_to_its_moment(logical_db, storage_api, repo, tmp_path):
    """Overwritten twice within one capture interval, or written and then deleted before the capture: the
    version between is gone from the server when the capture runs. Its moment is refused (or, with
    accept_earlier_point, the older version restored and named), never the later bytes under it."""
    locations, recipients, identities = repo
    files = StorageChain(logical_db, storage_api, locations, recipients, identities, tmp_path)
    files.upload("a.pdf", b"%PDF version 1", etag=True)
    files.start()
    between = files.upload("a.pdf", b"%PDF version 2", etag=True)
    files.upload("a.pdf", b"%PDF version 3", etag=True)
    files.upload("b.pdf", b"%PDF written, then deleted at the server first", etag=True)
    storage_api.delete("certificates", "b.pdf")
    after = run(logical_db, "SELECT 1")
    segment = files.capture()
    assert segment.details["storage"]["unavailable"] == 2

    with pytest.raises(BackupError, match=r"1 object\(s\) had a version then that was never captured .*a.pdf"):
        files.restored_at(between)
    assert files.restored_at(between, accept_earlier_point=True) == {"certificates/a.pdf": b"%PDF version 1"}
    assert list(files.report["storage"]["point_in_time"]["older_than_the_moment"]) == ["certificates/a.pdf"]
    with pytest.raises(BackupError, match=r"certificates/b.pdf"):
        files.restored_at(after)


def test_buckets_are_restored_as_they_were_at_the_moment_and_a_target_holding_more_is_refused(
        logical_db, storage_api, repo, tmp_path):
    from bhv360_backup.restore.storage import SupabaseSink
    from tests.fixtures.supabase_storage import SERVICE_KEY

    locations, recipients, identities = repo
    files = StorageChain(logical_db, storage_api, locations, recipients, identities, tmp_path)
    files.set_public("certificates", True)  # public in the snapshot
    files.upload("a.pdf", b"%PDF a")
    files.start()
    files.set_public("certificates", False)  # the owner made it private after the snapshot
    files.create_bucket("floor-plans")  # a bucket created after the snapshot, with a file
    files.upload("org-1/plan.png", b"\x89PNG plan", bucket="floor-plans")
    moment = run(logical_db, "SELECT 1")
    files.capture()

    storage_api.reset()  # a new project
    project = SupabaseSink(storage_api.url, SERVICE_KEY, files.storage())
    files.restore(moment, project)
    assert storage_api.buckets["certificates"]["public"] is False
    assert "floor-plans" in storage_api.buckets and ("floor-plans", "org-1/plan.png") in storage_api.objects

    storage_api.put("certificates", "uploaded-later.pdf", b"%PDF later")  # not in the backup at that moment
    with pytest.raises(BackupError, match=r"holds 1 object\(s\) the backup does not \(e.g. "
                                          r"certificates/uploaded-later.pdf\)"):
        files.restore(moment, SupabaseSink(storage_api.url, SERVICE_KEY, files.storage()))
