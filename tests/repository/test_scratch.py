"""The snapshot run's on-disk scratch index: lookups in batches, rows read back in index order."""

from __future__ import annotations

import hashlib
import json
import os
import random
from types import SimpleNamespace

import pytest

from bhv360_backup.errors import BackupError
from bhv360_backup.repository.scratch import BATCH, ScratchIndex, _BlobFilter
from bhv360_backup.repository.snapshots import IndexEntry
from bhv360_backup.streams import json_line


def sha(i):
    return hashlib.sha256(str(i).encode()).hexdigest()


def test_presence_from_the_listing_and_from_this_run_in_batches_larger_than_one_query():
    count = 3 * BATCH
    with ScratchIndex() as scratch:
        scratch.load_present("local", ((sha(i), i) for i in range(count)))
        scratch.mark_present("s3", sha(1), 1)  # not yet written: still found
        names = [sha(i) for i in range(count + 10)]
        assert scratch.present_sizes("local", names) == {sha(i): i for i in range(count)}
        assert scratch.present_sizes("s3", names) == {sha(1): 1}
        for i in range(BATCH):  # written in a batch on the way
            scratch.mark_present("s3", sha(count + i), 7)
        assert len(scratch.present_sizes("s3", [sha(count + i) for i in range(BATCH)])) == BATCH


def test_the_blob_filter_answers_for_its_own_location_and_seldom_wrongly():
    """Four independent positions per name: at 50,000 names no stranger and no other location's name
    passes (one position, or four equal ones, would let about one in 700 through)."""
    blob_filter = _BlobFilter()
    for i in range(50_000):
        blob_filter.add("local", sha(i))
    assert all(blob_filter.may_hold("local", sha(i)) for i in range(50_000))
    assert not any(blob_filter.may_hold("local", sha(-i)) for i in range(1, 20_000))
    assert not any(blob_filter.may_hold("s3", sha(i)) for i in range(20_000))


def test_previous_rows_of_a_location_that_failed_midway_are_replaced():
    with ScratchIndex() as scratch:
        scratch.load_previous(json_line({"source": f"s{i}", "sha256": sha(i)}) for i in range(10))
        scratch.load_previous([json_line({"source": "s3", "sha256": "other"})])
        assert {source: blob.row for source, blob in scratch.previous([f"s{i}" for i in range(10)]).items()} \
            == {"s3": {"source": "s3", "sha256": "other"}}


def test_previous_rows_are_kept_as_stored_and_a_line_without_a_source_is_left_out_and_counted():
    lines = ['{"sha256": "x", "source": "s1"}', "not json", "[1]", '{"source": 5}', '{"sha256": "y"}',
             '{"size":1,  "source":"s2"}']
    with ScratchIndex() as scratch:
        assert scratch.load_previous(lines) == 4
        assert {source: blob.line for source, blob in scratch.previous(["s1", "s2", "s3"]).items()} \
            == {"s1": lines[0], "s2": lines[-1]}


def test_entries_come_back_sorted_across_pages_and_the_last_for_a_name_wins():
    with ScratchIndex() as scratch:
        paths = [f"p{i:05d}" for i in reversed(range(2 * BATCH + 3))]
        for path in paths:
            scratch.add_entry(IndexEntry("b", path, sha(path), 1, None, None, "e", "t"))
        scratch.add_entry(IndexEntry("b", paths[0], sha("new"), 2, None, None, "e", "t"))
        rows = [json.loads(line) for line in scratch.index_lines()]
        assert [row["path"] for row in rows] == sorted(paths)
        assert rows[-1]["sha256"] == sha("new") and scratch.totals() == (len(paths), len(paths) + 1)
        assert [json.loads(line)["sha256"] for line in scratch.blob_lines()] == [row["sha256"] for row in rows]


def test_a_full_scratch_disk_is_named_as_such():
    with ScratchIndex() as scratch:
        scratch._db.execute("PRAGMA max_page_count = 8")  # the temporary disk runs full
        with pytest.raises(BackupError, match=r"scratch index in .* failed: database or disk is full .*TMPDIR"):
            scratch.load_present("local", ((sha(i), i) for i in range(5000)))


SEED = int(os.environ.get("BHV360_SOAK_SEED", "7"))


def random_entry(rng: random.Random, i: int) -> IndexEntry:
    def maybe(value):
        return value if rng.random() < 0.5 else None

    encrypted = rng.random() < 0.3
    return IndexEntry(rng.choice(["a", "b"]), f"{rng.choice(['', 'ü/', 'x y/'])}{i}", sha(i), rng.randrange(10**9),
                      maybe("image/png"), maybe("max-age=60"), sha(-i)[:32], f"2026-01-01T00:00:{i % 60:02d}Z",
                      maybe(sha(i)[:32]), "age-1" if encrypted else None, rng.randrange(10**9) if encrypted else None,
                      maybe("2027-01-01T00:00:00Z"), sha(i + 1) if encrypted else None, maybe(f"id-{i}"))


def stored_without_empty_fields(line: str) -> str:
    return json_line({key: value for key, value in json.loads(line).items()
                      if value is not None or key in ("content_type", "cache_control")})


def stored_blob_row(rng: random.Random, entry: IndexEntry) -> str:
    """The entry's blob row as a snapshot stores it; now and then without the optional fields it has no
    value for (as a row written by another release might be)."""
    line = json_line(entry.rows()[1])
    return stored_without_empty_fields(line) if rng.random() < 0.3 else line


def test_an_unchanged_object_stores_the_rows_it_would_have_stored_rebuilt():
    """Differential, seeded (``BHV360_SOAK_SEED``): the previous blob row kept as it is, and the index row
    made from it without an entry, equal the rows rebuilt from the entry, for entries of every shape the
    index holds."""
    rng = random.Random(SEED)
    earlier = [random_entry(rng, i) for i in range(400)]
    with ScratchIndex() as before:  # the rows as the previous snapshot's blobs.jsonl.gz holds them, loaded
        before.load_previous(stored_blob_row(rng, entry) for entry in earlier)
        previous = before.previous([entry.source for entry in earlier])
    unchanged = []
    for entry in earlier:
        # the same object at the source (the fingerprint's fields), its source id learnt since or not
        obj = SimpleNamespace(bucket=entry.bucket, path=entry.path, etag=entry.etag, updated_at=entry.updated_at,
                              id=rng.choice([None, entry.object_id, "new-id"]))
        unchanged.append((obj, previous[entry.source]))
    with ScratchIndex() as rebuilt, ScratchIndex() as kept:
        rebuilt.add_entries([IndexEntry.reuse(obj, earlier.row) for obj, earlier in unchanged])
        kept.add_unchanged(unchanged)
        assert list(kept.index_lines()) == list(rebuilt.index_lines()), f"seed {SEED}"
        for kept_line, rebuilt_line in zip(kept.blob_lines(), rebuilt.blob_lines(), strict=True):
            # the line as stored: the rebuilt one, or that one without the fields it had no value for
            assert kept_line == rebuilt_line or kept_line == stored_without_empty_fields(rebuilt_line), f"seed {SEED}"


def test_an_unchanged_object_whose_stored_row_has_a_field_no_entry_has_is_refused_as_before():
    entry = random_entry(random.Random(SEED), 1)
    with ScratchIndex() as before:
        before.load_previous([json_line({**entry.rows()[1], "colour": "red"})])
        (earlier,) = before.previous([entry.source]).values()
    obj = SimpleNamespace(bucket=entry.bucket, path=entry.path, etag=entry.etag, updated_at=entry.updated_at, id=None)
    with ScratchIndex() as kept, pytest.raises(TypeError, match="colour"):
        kept.add_unchanged([(obj, earlier)])
