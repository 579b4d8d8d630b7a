"""The blob store of one run: each blob written once to its content address, whether the run listed
the location's blobs (a snapshot) or asks about each one (an incremental segment)."""

from __future__ import annotations

import hashlib

import pytest

from bhv360_backup.locations import LocalLocation
from bhv360_backup.repository.blobs import BlobStore
from bhv360_backup.repository.layout import BackupType, blob_key
from bhv360_backup.repository.scratch import ScratchIndex
from bhv360_backup.repository.writer import BackupWriter


class UnlistableLocation(LocalLocation):
    def iter_objects(self, prefix):
        raise AssertionError(f"listed {prefix}: a segment's few objects must not list the whole blob store")


@pytest.mark.parametrize("listed", [True, False])
def test_a_blob_already_stored_is_not_written_again_and_a_new_one_is(tmp_path, listed):
    location = (LocalLocation if listed else UnlistableLocation)(tmp_path / "backups")
    kept, new = b"floor plan, stored by last week's snapshot", b"a certificate uploaded today"
    location.put_bytes(blob_key(hashlib.sha256(kept).hexdigest()), kept)
    stored_before = location.path_of(blob_key(hashlib.sha256(kept).hexdigest())).stat()
    writer = BackupWriter([location], BackupType.INCREMENTAL, "20261127T010000Z")
    with ScratchIndex() as scratch:
        blobs = BlobStore(writer, scratch, listed=listed)
        assert blobs.reusable([{"sha256": hashlib.sha256(kept).hexdigest(), "size": len(kept)}]) == [True]
        first, second = blobs.store(iter([kept])), blobs.store(iter([new]))
    stored_after = location.path_of(blob_key(first.sha256)).stat()
    assert (stored_after.st_ino, stored_after.st_mtime_ns) == (stored_before.st_ino, stored_before.st_mtime_ns)
    assert list(location.read_chunks(blob_key(second.sha256))) == [new]
    assert writer.failures == {}
