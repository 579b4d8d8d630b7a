"""What one snapshot run looks up by key but must not hold in memory (a million objects would take
gigabytes as Python dicts): the previous snapshot's blob rows by source fingerprint, the blobs each
location holds, and the new index entries in index order. One SQLite file in a temporary folder
(``TMPDIR``; about 400 bytes per object), removed when the run ends.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from bhv360_backup.repository.snapshots import IndexEntry
from bhv360_backup.streams import json_line

_SCHEMA = """
CREATE TABLE previous (source TEXT PRIMARY KEY, row TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE present (location TEXT, name TEXT, size INTEGER NOT NULL, PRIMARY KEY (location, name)) WITHOUT ROWID;
CREATE TABLE entries (bucket TEXT, path TEXT, size INTEGER NOT NULL, row TEXT NOT NULL, blob_row TEXT NOT NULL,
                      PRIMARY KEY (bucket, path)) WITHOUT ROWID;
"""
_BATCH = 2000


class ScratchIndex:
    """An on-disk index for one run, safe to use from the run's threads. Use it as a context manager."""

    def __init__(self) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="bhv360-snapshot-"))
        self._db = sqlite3.connect(self._folder / "scratch.sqlite", check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        # a throwaway file: no journal, no fsync, one transaction for the whole run, a bounded page cache
        self._db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-16000;"
                               + _SCHEMA + "BEGIN;")

    def __enter__(self) -> ScratchIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._db.close()
        shutil.rmtree(self._folder, ignore_errors=True)

    def _insert_many(self, statement: str, rows: Iterable[tuple]) -> None:
        batch: list[tuple] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= _BATCH:
                with self._lock:
                    self._db.executemany(statement, batch)
                batch.clear()
        with self._lock:
            self._db.executemany(statement, batch)

    def load_previous(self, blob_rows: Iterable[dict]) -> None:
        """The previous snapshot's blob rows; any loaded before are replaced (a location that failed midway)."""
        with self._lock:
            self._db.execute("DELETE FROM previous")
        self._insert_many("INSERT OR REPLACE INTO previous VALUES (?, ?)",
                          ((row["source"], json.dumps(row)) for row in blob_rows))

    def previous(self, source: str) -> dict | None:
        with self._lock:
            found = self._db.execute("SELECT row FROM previous WHERE source = ?", (source,)).fetchone()
        return json.loads(found[0]) if found else None

    def load_present(self, location: str, blobs: Iterable[tuple[str, int]]) -> None:
        """The blobs (name, stored size) ``location`` holds."""
        self._insert_many("INSERT OR REPLACE INTO present VALUES (?, ?, ?)",
                          ((location, name, size) for name, size in blobs))

    def present_size(self, location: str, name: str) -> int | None:
        with self._lock:
            found = self._db.execute("SELECT size FROM present WHERE location = ? AND name = ?",
                                     (location, name)).fetchone()
        return found[0] if found else None

    def mark_present(self, location: str, name: str, size: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO present VALUES (?, ?, ?)", (location, name, size))

    def add_entry(self, entry: IndexEntry) -> None:
        """An entry of the new index (a later one for the same bucket and path replaces it)."""
        row, blob_row = json_line(entry.row()), json_line(entry.blob_row())
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)",
                             (entry.bucket, entry.path, entry.size, row, blob_row))

    def totals(self) -> tuple[int, int]:
        """The new index's number of entries and plain bytes."""
        with self._lock:
            count, size = self._db.execute("SELECT count(*), coalesce(sum(size), 0) FROM entries").fetchone()
        return count, size

    def _lines(self, column: str) -> Iterator[str]:
        # SQLite's BINARY order of UTF-8 text is Python's order of str: the index stays sorted as before
        after: tuple[str, str] | None = None
        while True:
            with self._lock:
                if after is None:
                    page = self._db.execute(f"SELECT bucket, path, {column} FROM entries ORDER BY bucket, path "
                                            "LIMIT ?", (_BATCH,)).fetchall()
                else:
                    page = self._db.execute(f"SELECT bucket, path, {column} FROM entries WHERE (bucket, path) > (?, ?) "
                                            "ORDER BY bucket, path LIMIT ?", (*after, _BATCH)).fetchall()
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
