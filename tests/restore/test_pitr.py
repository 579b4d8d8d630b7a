"""Exact or refused: point-in-time restores on a real wal_level = logical cluster, each case one that once
ended green while the restored database differed from the source."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from bhv360_backup.errors import BackupError
from bhv360_backup.locations import LocalLocation
from bhv360_backup.repository.catalog import list_backups
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import parse_iso
from bhv360_backup.sources import postgres as postgres_source
from bhv360_backup.sources.changes import ChangeSource
from tests.fixtures import postgres
from tests.fixtures.chain import SLOT, capture, dump, restore_to, run, state

TYPES_SCHEMA = """
CREATE TYPE mood AS ENUM ('calm', 'alert');
CREATE DOMAIN postcode AS text CHECK (VALUE ~ '^[0-9]{4}[A-Z]{2}$');
CREATE TYPE address AS (street varchar(20), code postcode);
CREATE TABLE kinds (
  id int PRIMARY KEY, c char(8), vc varchar(5), n numeric(5,2), b bit(4), vb varbit(8), t time(0), tz timetz(2),
  ts timestamp(1), tstz timestamptz(3), iv interval(0), m mood, d postcode, a address, ca char(3)[], na numeric(4,1)[],
  ma mood[], j json, jb jsonb, by bytea, u uuid, ip inet, r int4range, tr tstzrange, f float8, money_ money);
"""
TYPES_ROWS = """
INSERT INTO kinds VALUES (1, 'ABCDE', 'abc', 123.456, B'1010', B'101', '10:11:12.6', '10:11:12.345+02',
  '2026-01-02 03:04:05.66', '2026-01-02 03:04:05.6667+01', '1 day 02:03:04.7', 'alert', '1234AB', ROW('Dorpsstraat', '1234AB'),
  '{ab,c}', '{1.25,2.35}', '{calm,alert}', '{"k": [1, 2.50]}', '{"k": [1, 2.50]}', '\\x00ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '10.1.2.3/16', '[1,5)', '[2026-01-01,2026-02-01)', 0.1, 12.345)
"""


@pytest.fixture
def local(tmp_path):
    return [LocalLocation(tmp_path / "backups")]


def chain_with(logical_db, locations, schema):
    run(logical_db, schema)
    source = ChangeSource(logical_db, SLOT)
    capture(source, locations)
    dump(logical_db, locations)
    return source


def restored_equal(logical_cluster, logical_db, locations, tmp_path, tables, **kwargs):
    target, plan, report = restore_to(logical_cluster, locations, (), None, tmp_path, **kwargs)
    try:
        assert state(target, tables) == state(logical_db, tables)
        return report["database"].get("point_in_time")
    finally:
        postgres.drop_database(target)


def test_every_type_family_replays_with_its_modifiers(logical_db, logical_cluster, local, tmp_path):
    source = chain_with(logical_db, local, TYPES_SCHEMA)
    run(logical_db, TYPES_ROWS, TYPES_ROWS.replace("(1,", "(2,"),
        "UPDATE kinds SET c = 'XYZ', vc = 'de', n = 1.5, b = B'0110', vb = B'11111111', ca = '{x}' WHERE id = 2",
        "UPDATE kinds SET c = 'QRSTU' WHERE id = 1")  # a key unchanged: found by its key, set by its real type
    capture(source, local)
    restored_equal(logical_cluster, logical_db, local, tmp_path, ["public.kinds"])


def test_replica_identity_full_with_nulls_changes_only_the_row_it_names(logical_db, logical_cluster, local, tmp_path):
    source = chain_with(logical_db, local, "CREATE TABLE pairs (a int, b int, note text); "
                                           "ALTER TABLE pairs REPLICA IDENTITY FULL; "
                                           "INSERT INTO pairs VALUES (1, 2, 'x'), (1, NULL, 'x'), (3, 3, NULL), (3, 3, NULL)")
    run(logical_db, "DELETE FROM pairs WHERE a = 1 AND b IS NULL",
        "UPDATE pairs SET note = 'one of two twins' WHERE ctid = (SELECT ctid FROM pairs WHERE a = 3 LIMIT 1)",
        "INSERT INTO pairs VALUES (4, NULL, NULL)", "UPDATE pairs SET b = 5 WHERE a = 4")
    capture(source, local)
    restored_equal(logical_cluster, logical_db, local, tmp_path, ["public.pairs"])


def test_generated_and_always_identity_columns_replay(logical_db, logical_cluster, local, tmp_path):
    source = chain_with(logical_db, local, "CREATE TABLE people (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                                           "first text, last text, full_name text GENERATED ALWAYS AS "
                                           "(first || ' ' || last) STORED)")
    run(logical_db, "INSERT INTO people (first, last) VALUES ('Anna', 'Jansen'), ('Bram', 'de Vries')",
        "UPDATE people SET last = 'Bakker' WHERE first = 'Anna'", "DELETE FROM people WHERE first = 'Bram'")
    capture(source, local)
    restored_equal(logical_cluster, logical_db, local, tmp_path, ["public.people"])


def test_logical_decoding_messages_do_not_stop_the_capture(logical_db, logical_cluster, local, tmp_path):
    source = chain_with(logical_db, local, "CREATE TABLE notes (id int PRIMARY KEY, v text)")
    run(logical_db, "SELECT pg_logical_emit_message(true, 'app', 'in a transaction')",
        "SELECT pg_logical_emit_message(false, 'app', 'outside one')", "INSERT INTO notes VALUES (1, 'after')")
    segment = capture(source, local)
    assert segment.details["messages"] == {"app": 2}
    restored_equal(logical_cluster, logical_db, local, tmp_path, ["public.notes"])


ASYNCHRONOUS_ROWS = 10_000


def test_asynchronous_commits_are_never_skipped_by_the_slot(logical_db, logical_cluster, local, tmp_path):
    """The slot moves only as far as the decoded stream went: a commit not yet flushed when the capture
    looked is in this segment or the next, never in neither."""
    source = chain_with(logical_db, local, "CREATE TABLE beats (n int PRIMARY KEY, pad text)")
    stop = threading.Event()

    def write_asynchronously():
        with psycopg.connect(host=logical_db.host, port=logical_db.port, user="postgres", dbname=logical_db.dbname,
                             autocommit=True) as writer:
            writer.execute("SET synchronous_commit = off")
            for n in range(ASYNCHRONOUS_ROWS):
                if stop.is_set():
                    return
                writer.execute("INSERT INTO beats SELECT %s, repeat(md5(%s::text), 200)", [n, n])

    # as many rows on a busy machine as on a quiet one (a writer bounded by time wrote so many under load
    # that the replay outlasted the test's timeout); captures run for as long as the writer does
    thread = threading.Thread(target=write_asynchronously)
    thread.start()
    captures = 0
    try:
        while thread.is_alive():
            capture(source, local)
            captures += 1
    finally:
        stop.set()
        thread.join()
    capture(source, local)
    assert captures >= 2, "the writer finished before a second capture: nothing ran side by side"
    restored_equal(logical_cluster, logical_db, local, tmp_path, ["public.beats"])


def test_a_capture_between_the_snapshot_and_the_chain_point_loses_nothing(
        logical_db, logical_cluster, local, tmp_path, monkeypatch):
    """A capture that moves the slot while a dump starts: its transactions are in the dump or the chain."""
    source = chain_with(logical_db, local, "CREATE TABLE beats (n int PRIMARY KEY)")
    real_slot_state = postgres_source.slot_state
    raced = []

    def capture_then_read(cursor, slot):
        if not raced:
            raced.append(True)
            run(logical_db, "INSERT INTO beats VALUES (1)")
            capture(source, local)
        return real_slot_state(cursor, slot)

    monkeypatch.setattr(postgres_source, "slot_state", capture_then_read)
    dump(logical_db, local)
    monkeypatch.undo()
    run(logical_db, "INSERT INTO beats VALUES (2)")
    capture(source, local)
    restored_equal(logical_cluster, logical_db, local, tmp_path, ["public.beats"])


def test_an_explicit_backup_after_the_moment_is_refused_naming_the_one_before(logical_db, logical_cluster, local,
                                                                               tmp_path):
    source = chain_with(logical_db, local, "CREATE TABLE beats (n int PRIMARY KEY)")
    moment = run(logical_db, "INSERT INTO beats VALUES (1)")
    capture(source, local)
    earlier = list_backups(local[0], BackupType.DATABASE)[-1]
    later = dump(logical_db, local)
    with pytest.raises(BackupError, match=f"database backup {later.backup_id} was taken at .* after point_in_time.*"
                                          f"newest database backup before it is {earlier}"):
        restore_to(logical_cluster, local, (), moment, tmp_path, database=later.backup_id)


def test_the_drills_moment_has_a_chain_base_before_it(logical_db, local):
    """A database backup between the two newest segments: the drill's moment lies after it (it was once
    halfway between the segments, before the only backup, and the drill failed on no backup)."""
    from bhv360_backup.drill import between_the_newest_segments

    source = ChangeSource(logical_db, SLOT)
    run(logical_db, "CREATE TABLE beats (n int PRIMARY KEY)")
    capture(source, local)
    time.sleep(1)
    base = dump(logical_db, local)
    capture(source, local)
    moment = between_the_newest_segments(local)
    assert moment >= parse_iso(base.details["chain"]["snapshot_at"])


def test_what_logical_decoding_never_carries_is_named_in_the_plan_and_the_report(logical_db, logical_cluster, local,
                                                                                  tmp_path):
    source = chain_with(logical_db, local, "CREATE TABLE beats (n int PRIMARY KEY); "
                                           "CREATE UNLOGGED TABLE scratch (n int PRIMARY KEY); "
                                           "CREATE MATERIALIZED VIEW beat_count AS SELECT count(*) FROM beats; "
                                           "SELECT lo_from_bytea(0, 'a scanned certificate')")
    run(logical_db, "INSERT INTO beats VALUES (1)", "INSERT INTO scratch VALUES (1)")
    capture(source, local)
    target, plan, report = restore_to(logical_cluster, local, (), None, tmp_path)
    try:
        expected = ("restored as of the database backup, not of the moment asked for (logical decoding does not carry "
                    "them): unlogged table(s) public.scratch; materialized view(s) public.beat_count (not refreshed); "
                    "1 large object(s)")
        assert report["database"]["point_in_time"]["as_of_the_dump"] == expected
        assert state(target, ["public.scratch"]) == {"public.scratch": (0, "")}  # as at the dump: empty
    finally:
        postgres.drop_database(target)


def test_a_backlog_is_captured_in_pieces_of_whole_transactions_each_run_finishing(logical_db, logical_cluster, local,
                                                                                  tmp_path):
    """After an outage: 60 transactions of 1,000 rows wait in the slot; each capture takes a piece of about
    20,000 lines (whole transactions), ends at its last commit and says backlog; the next goes on; the
    restore equals the source. (The 2-million-change run is benchmarks/bench_backlog.py.)"""
    source = chain_with(logical_db, local, "CREATE TABLE beats (n int PRIMARY KEY, note text)")
    for batch in range(60):
        run(logical_db, f"INSERT INTO beats SELECT g, 'batch {batch}' FROM generate_series({batch * 1000 + 1}, "
                        f"{batch * 1000 + 1000}) g")
    pieces = []
    while True:
        writer_manifest = capture(source, local, piece_lines=20_000)
        pieces.append(writer_manifest.details)
        if not writer_manifest.details.get("backlog"):
            break
    assert len(pieces) >= 3 and all(piece["backlog"] for piece in pieces[:-1])
    assert all(piece["changes"] % 1000 == 0 for piece in pieces)  # whole transactions only
    restored_equal(logical_cluster, logical_db, local, tmp_path, ["public.beats"])
