"""The snapshot run's on-disk scratch index: lookups in batches, rows read back in index order."""

from __future__ import annotations

import hashlib
import json

import pytest

from bhv360_backup.errors import BackupError
from bhv360_backup.repository.scratch import BATCH, ScratchIndex
from bhv360_backup.repository.snapshots import IndexEntry


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


def test_previous_rows_of_a_location_that_failed_midway_are_replaced():
    with ScratchIndex() as scratch:
        scratch.load_previous({"source": f"s{i}", "sha256": sha(i)} for i in range(10))
        scratch.load_previous([{"source": "s3", "sha256": "other"}])
        assert scratch.previous([f"s{i}" for i in range(10)]) == {"s3": {"source": "s3", "sha256": "other"}}


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
