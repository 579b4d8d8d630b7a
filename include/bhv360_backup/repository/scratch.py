"""What one snapshot run looks up by key but must not hold in memory (a million objects would take
gigabytes as Python dicts): the previous snapshot's blob rows by source fingerprint, the blobs each
location holds, and the new index entries in index order. One SQLite file in a temporary folder
(``TMPDIR``; about 1.2 KB per object at its peak), removed when the run ends.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from bhv360_backup.errors import BackupError
from bhv360_backup.repository.snapshots import IndexEntry, reused_row
from bhv360_backup.streams import json_line

if TYPE_CHECKING:
    from bhv360_backup.sources.storage import ObjectInfo

_SCHEMA = """
CREATE TABLE previous (source TEXT NOT NULL, row TEXT NOT NULL);
CREATE UNIQUE INDEX previous_by_source ON previous (source);
CREATE TABLE present (location TEXT, name TEXT, size INTEGER NOT NULL, PRIMARY KEY (location, name)) WITHOUT ROWID;
CREATE TABLE entries (bucket TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL, row TEXT NOT NULL,
                      blob_row TEXT NOT NULL);
CREATE UNIQUE INDEX entries_by_name ON entries (bucket, path);
"""
# rows arrive in no particular key order: appended to full pages, only the small key indexes are sorted
_INSERT_PRESENT = "INSERT OR REPLACE INTO present VALUES (?, ?, ?)"
BATCH = 500  # rows per statement: each SQLite call gives up the GIL, so the run's threads meet it rarely
_FILTER_BITS = 1 << 25  # 4 MB, a position in 25 bits: 0.02 % false positives at a million blobs, 0.2 % at two


class PreviousBlob(NamedTuple):
    """A blob row of the previous snapshot, and its line as stored."""

    row: dict
    line: str


def batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


class _BlobFilter:
    """A Bloom filter of the blob names (sha256 hex, so already uniformly spread) known to be present:
    most lookups of a new blob end here, without a query."""

    def __init__(self) -> None:
        self._bits = bytearray(_FILTER_BITS // 8)

    def _positions(self, location: str, name: str) -> list[int]:
        value, salt = int(name[:25], 16), hash(location)  # 100 bits of the name: four positions of 25
        return [((value >> shift) ^ salt) & (_FILTER_BITS - 1) for shift in (0, 25, 50, 75)]

    def add(self, location: str, name: str) -> None:
        for position in self._positions(location, name):
            self._bits[position >> 3] |= 1 << (position & 7)

    def may_hold(self, location: str, name: str) -> bool:
        return all(self._bits[position >> 3] & (1 << (position & 7)) for position in self._positions(location, name))


class ScratchIndex:
    """An on-disk index for one run, safe to use from the run's threads. Use it as a context manager.
    Rows are written in batches; lookups of many keys go in one query."""

    def __init__(self) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="bhv360-snapshot-"))
        self._db = sqlite3.connect(self._folder / "scratch.sqlite", check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._filter = _BlobFilter()
        self._marked: dict[tuple[str, str], int] = {}  # present, not yet written
        self._entries: list[tuple] = []  # not yet written
        # a throwaway file: no journal, no fsync, one transaction for the whole run, a bounded page cache
        self._db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-16000;"
                               + _SCHEMA + "BEGIN;")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The connection to this thread alone; a failing SQLite call named as the scratch index's."""
        with self._lock:
            try:
                yield
            except sqlite3.Error as error:
                raise BackupError(f"the snapshot's scratch index in {self._folder} failed: {error} (it needs about "
                                  "1.2 KB per object in the worker's TMPDIR)") from None

    def __enter__(self) -> ScratchIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._db.close()
        shutil.rmtree(self._folder, ignore_errors=True)

    def _insert_many(self, statement: str, rows: Iterable[tuple]) -> int:
        """The rows given and not inserted (``statement`` may leave some out)."""
        left_out = 0
        for batch in batched(rows, BATCH):
            with self._locked():
                left_out += len(batch) - self._db.executemany(statement, batch).rowcount
        return left_out

    def _select_many(self, statement: str, first: tuple, keys: list[str]) -> list[tuple]:
        """``statement`` with ``{keys}`` for up to BATCH placeholders, run for each batch of ``keys``."""
        found = []
        for batch in batched(keys, BATCH):
            query = statement.format(keys=",".join("?" * len(batch)))
            with self._locked():
                found.extend(self._db.execute(query, (*first, *batch)).fetchall())
        return found

    def load_previous(self, blob_lines: Iterable[str]) -> int:
        """The previous snapshot's blob rows, as the JSON lines it stores them in; any loaded before are
        replaced (a location that failed midway). Returns how many lines were no JSON object with a
        ``source`` (left out: their objects are copied again)."""
        with self._locked():
            self._db.execute("DELETE FROM previous")
        # each row's key read by SQLite's own JSON parser: a row is parsed in Python only when it is used
        return self._insert_many("INSERT OR REPLACE INTO previous SELECT json_extract(?1, '$.source'), ?1 "
                                 "WHERE CASE WHEN json_valid(?1) THEN json_type(?1, '$.source') = 'text' END",
                                 ((line,) for line in blob_lines))

    def previous(self, sources: list[str]) -> dict[str, PreviousBlob]:
        """The previous snapshot's blob rows of those of ``sources`` it has."""
        found = self._select_many("SELECT source, row FROM previous WHERE source IN ({keys})", (), sources)
        return {source: PreviousBlob(json.loads(line), line) for source, line in found}

    def load_present(self, location: str, blobs: Iterable[tuple[str, int]]) -> None:
        """The blobs (name, stored size) ``location`` holds."""
        def rows() -> Iterator[tuple[str, str, int]]:
            for name, size in blobs:
                self._filter.add(location, name)
                yield location, name, size

        self._insert_many(_INSERT_PRESENT, rows())

    def present_sizes(self, location: str, names: list[str]) -> dict[str, int]:
        """The stored sizes of those of ``names`` that ``location`` holds."""
        with self._locked():
            marked = {name: self._marked[(location, name)] for name in names if (location, name) in self._marked}
        wanted = [name for name in names if name not in marked and self._filter.may_hold(location, name)]
        found = self._select_many("SELECT name, size FROM present WHERE location = ? AND name IN ({keys})",
                                  (location,), wanted)
        return {**dict(found), **marked}

    def mark_present(self, location: str, name: str, size: int) -> None:
        self._filter.add(location, name)
        with self._locked():
            self._marked[(location, name)] = size
            if len(self._marked) >= BATCH:
                self._db.executemany(_INSERT_PRESENT, [(*key, size) for key, size in self._marked.items()])
                self._marked.clear()

    def add_entry(self, entry: IndexEntry) -> None:
        """An entry of the new index (a later one for the same bucket and path replaces it)."""
        self.add_entries([entry])

    def add_entries(self, entries: list[IndexEntry]) -> None:
        """Entries of the new index, under one lock."""
        lines = []
        for entry in entries:
            row, blob_row = entry.rows()
            lines.append((entry.bucket, entry.path, entry.size, json_line(row), json_line(blob_row)))
        self._add_lines(lines)

    def add_unchanged(self, objects: list[tuple[ObjectInfo, PreviousBlob]]) -> None:
        """Entries of objects unchanged since the previous snapshot, each with the blob row that snapshot
        has for it: the same fingerprint and blob, so the same row, kept as it was."""
        lines = []
        for obj, earlier in objects:
            row = reused_row(obj, earlier.row)
            lines.append((obj.bucket, obj.path, row["size"], json_line(row), earlier.line))
        self._add_lines(lines)

    def _add_lines(self, lines: list[tuple[str, str, int, str, str]]) -> None:
        with self._locked():
            self._entries.extend(lines)
            if len(self._entries) >= BATCH:
                self._write_entries()

    def _write_entries(self) -> None:
        self._db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)", self._entries)
        self._entries.clear()

    def totals(self) -> tuple[int, int]:
        """The new index's number of entries and plain bytes."""
        with self._locked():
            self._write_entries()
            count, size = self._db.execute("SELECT count(*), coalesce(sum(size), 0) FROM entries").fetchone()
        return count, size

    def _lines(self, column: str) -> Iterator[str]:
        # SQLite's BINARY order of UTF-8 text is Python's order of str: the index stays sorted as before
        after = ("", "")  # before every name: a path is never empty
        while True:
            with self._locked():
                self._write_entries()
                page = self._db.execute(f"SELECT bucket, path, {column} FROM entries WHERE (bucket, path) > (?, ?) "
                                        "ORDER BY bucket, path LIMIT ?", (*after, BATCH)).fetchall()
            if not page:
                return
            for _, _, line in page:
                yield line
            after = page[-1][0], page[-1][1]

    def index_lines(self) -> Iterator[str]:
        """The rows of ``objects.jsonl.gz``, ordered by bucket and path."""
        return self._lines("row")

    def blob_lines(self) -> Iterator[str]:
        """The rows of ``blobs.jsonl.gz``, in the same order."""
        return self._lines("blob_row")
