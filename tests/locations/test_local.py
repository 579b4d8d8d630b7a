from __future__ import annotations

import os
import pathlib

import pytest

from bhv360_backup.errors import BackupError
from bhv360_backup.locations import LocalLocation


def test_abort_leaves_no_file(tmp_path):
    location = LocalLocation(tmp_path)
    writer = location.open_writer("database/20260101T000000Z/database.dump")
    writer.write(b"half a dump")
    assert location.size_of("database/20260101T000000Z/database.dump") is None
    writer.abort()
    assert os.listdir(tmp_path / "database" / "20260101T000000Z") == []


def test_keys_cannot_leave_the_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "database").symlink_to(tmp_path)
    location = LocalLocation(root)
    for key in ("../etc/passwd", "/etc/passwd", "database/../../x", "database/x"):
        with pytest.raises(BackupError):
            location.open_writer(key)


def test_a_file_linked_out_of_a_folder_already_checked_is_refused(tmp_path):
    root = tmp_path / "root"
    location = LocalLocation(root)
    location.put_bytes("blobs/sha256/ab/first", b"x")
    (root / "blobs" / "sha256" / "ab" / "second").symlink_to(tmp_path / "secret")
    assert list(location.read_chunks("blobs/sha256/ab/first")) == [b"x"]
    with pytest.raises(BackupError, match="outside the local backup root"):
        location.open_writer("blobs/sha256/ab/second")


def test_sizes_are_of_regular_files_only_as_the_listing_shows_them(tmp_path):
    """A symlink is no stored object, even to a file inside the root; a folder linked out is refused."""
    root = tmp_path / "root"
    location = LocalLocation(root)
    location.put_bytes("blobs/sha256/ab/stored", b"12345")
    (root / "blobs" / "sha256" / "ab" / "linked").symlink_to(root / "blobs" / "sha256" / "ab" / "stored")
    (root / "blobs" / "sha256" / "cd").symlink_to(tmp_path)
    (tmp_path / "outside").write_bytes(b"x")
    keys = ["blobs/sha256/ab/stored", "blobs/sha256/ab/linked", "blobs/sha256/ab/missing", "blobs/sha256/ef/missing"]
    assert location.sizes_of(keys) == {"blobs/sha256/ab/stored": 5}
    assert [location.size_of(key) for key in keys] == [5, None, None, None]
    assert [item.key for item in location.iter_objects("blobs/")] == ["blobs/sha256/ab/stored"]
    with pytest.raises(BackupError, match="outside the local backup root"):
        location.sizes_of(["blobs/sha256/cd/outside"])
    with pytest.raises(BackupError, match="unsafe relative path"):
        location.sizes_of(["blobs/sha256/ab/../../../../outside"])


def test_a_file_renamed_while_the_folder_is_listed_does_not_break_the_listing(tmp_path, monkeypatch):
    """A lock's staging file committed by another run right after it was first looked at (garbage
    collection lists while a snapshot writes): the listing goes on."""
    location = LocalLocation(tmp_path)
    location.put_bytes("locks/kept.json", b"{}")
    staging = tmp_path / "locks" / ".partial-1-snapshot-1.json"
    staging.write_bytes(b"{}")
    real_stat = os.stat

    def stat_then_commit(path, *args, **kwargs):
        found = real_stat(path, *args, **kwargs)
        if pathlib.Path(path) == staging:
            staging.rename(tmp_path / "locks" / "snapshot-1.json")
        return found

    monkeypatch.setattr(os, "stat", stat_then_commit)
    keys = [item.key for item in location.iter_objects("locks/")]
    assert "locks/kept.json" in keys


def test_a_durable_file_is_handed_to_the_disk_in_steps_while_it_is_written(tmp_path, monkeypatch):
    """So the sync on commit waits for the last step only; the calls go through to the kernel."""
    from bhv360_backup.locations import local

    monkeypatch.setattr(local, "WRITE_BACK_EVERY", 1 << 20)
    ranges = []
    start_write_back = local._start_write_back
    assert start_write_back is not None  # Linux's C library has it
    monkeypatch.setattr(local, "_start_write_back",
                        lambda fd, offset, length, flags: ranges.append((offset, length)) or start_write_back(fd, offset, length, flags))
    location = LocalLocation(tmp_path)
    chunk = os.urandom(300_000)
    dump = location.open_writer("database/20260101T000000Z/database.dump")
    for _ in range(12):
        dump.write(chunk)
    dump.commit()
    assert ranges == [(0, 1_200_000), (1_200_000, 1_200_000), (2_400_000, 1_200_000)]
    assert location.read_bytes("database/20260101T000000Z/database.dump") == chunk * 12
    blob = location.open_blob_writer("blobs/sha256/", lambda: "blobs/sha256/ab/abcd")  # synced by the snapshot's flush
    for _ in range(12):
        blob.write(chunk)
    blob.commit()
    assert len(ranges) == 3
