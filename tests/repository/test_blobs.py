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
        raise AssertionError(f"listed {prefix}: this run must ask about each blob, not list the blob store")


class RemoteLikeLocation(LocalLocation):
    """A folder that is asked as an S3 bucket is: its blobs listed once, a lookup taken to be a request."""

    cheap_size_lookups = False


class UnlistableRemoteLikeLocation(UnlistableLocation):
    cheap_size_lookups = False


# how the run learns what the location holds: a snapshot lists a remote location once, a segment asks a
# remote one about each blob, and every run asks a folder about each blob (an lstat, cheaper than a listing)
WAYS = {"listed": (RemoteLikeLocation, True), "asked, a segment": (UnlistableRemoteLikeLocation, False),
        "asked, a folder": (UnlistableLocation, True)}


@pytest.mark.parametrize("way", WAYS)
def test_a_blob_already_stored_is_not_written_again_and_a_new_one_is(tmp_path, way):
    location_type, listed = WAYS[way]
    location = location_type(tmp_path / "backups")
    kept, new = b"floor plan, stored by last week's snapshot", b"a certificate uploaded today"
    location.put_bytes(blob_key(hashlib.sha256(kept).hexdigest()), kept)
    stored_before = location.path_of(blob_key(hashlib.sha256(kept).hexdigest())).stat()
    writer = BackupWriter([location], BackupType.INCREMENTAL, "20261127T010000Z")
    with ScratchIndex() as scratch:
        blobs = BlobStore(writer, scratch, listed=listed)
        assert blobs.reusable([{"sha256": hashlib.sha256(kept).hexdigest(), "size": len(kept)}]) == [True]
        first, second = blobs.store(iter([kept])), blobs.store(iter([new]))
        assert blobs.reusable([{"sha256": second.sha256, "size": len(new)}]) == [True]
    stored_after = location.path_of(blob_key(first.sha256)).stat()
    assert (stored_after.st_ino, stored_after.st_mtime_ns) == (stored_before.st_ino, stored_before.st_mtime_ns)
    assert list(location.read_chunks(blob_key(second.sha256))) == [new]
    assert writer.failures == {}


@pytest.mark.parametrize("way", WAYS)
def test_a_blob_cut_short_or_replaced_by_a_link_is_not_reused_and_is_written_again(tmp_path, way):
    """(A link that leads out of the root is refused outright: tests/locations/test_local.py.)"""
    location_type, listed = WAYS[way]
    location = location_type(tmp_path / "backups")
    cut, linked = b"an incident photo, cut short on disk", b"an evacuation plan, replaced by a link"
    for content in (cut, linked):
        location.put_bytes(blob_key(hashlib.sha256(content).hexdigest()), content)
    cut_path = location.path_of(blob_key(hashlib.sha256(cut).hexdigest()))
    cut_path.write_bytes(cut[:10])
    linked_path = location.path_of(blob_key(hashlib.sha256(linked).hexdigest()))
    (tmp_path / "backups" / "elsewhere").write_bytes(linked)
    linked_path.unlink()
    linked_path.symlink_to(tmp_path / "backups" / "elsewhere")
    writer = BackupWriter([location], BackupType.STORAGE, "20261127T010000Z")
    with ScratchIndex() as scratch:
        blobs = BlobStore(writer, scratch, listed=listed)
        rows = [{"sha256": hashlib.sha256(content).hexdigest(), "size": len(content)} for content in (cut, linked)]
        assert blobs.reusable(rows) == [False, False]
        for content in (cut, linked):
            blobs.store(iter([content]))
    assert cut_path.read_bytes() == cut
    assert not linked_path.is_symlink() and linked_path.read_bytes() == linked
    assert writer.failures == {}
