"""Locks that a long run keeps alive, and a retry that copies blobs only under one."""

from __future__ import annotations

import json
import time
from datetime import timedelta

from bhv360_backup.locations import LocalLocation
from bhv360_backup.locations.base import STAGING_PREFIX
from bhv360_backup.producers import storage as storage_producer
from bhv360_backup.producers.storage import take_snapshot
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.locks import live_locks, shared_lock
from bhv360_backup.repository.manifest import utc_now
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.sources.storage import LocalFolderSource


def expiry(location):
    # the refresh writes the lock again through a staging file beside it: that one is not the lock (yet)
    (item,) = [item for item in location.iter_objects("locks/")
               if not item.key.rsplit("/", 1)[-1].startswith(STAGING_PREFIX)]
    return json.loads(location.read_bytes(item.key))["expires_at"]


def test_a_shared_lock_is_written_again_while_it_is_held(tmp_path):
    location = LocalLocation(tmp_path / "backups")
    with shared_lock([location], "long-run", refresh_every=timedelta(seconds=0.05)):
        first = expiry(location)
        time.sleep(1.2)  # the expiry is written to the second
        assert expiry(location) > first
    assert live_locks(location, utc_now()) == []


def test_an_unwritable_location_is_handed_over_and_the_others_are_locked(tmp_path):
    good, bad = LocalLocation(tmp_path / "good"), LocalLocation(tmp_path / "bad")
    (tmp_path / "bad").write_text("a file where the folder should be")
    dropped = []
    with shared_lock([good, bad], "run", unreachable=lambda location, reason: dropped.append(location)):
        assert len(live_locks(good, utc_now())) == 1
    assert dropped == [bad]


def test_a_retry_copies_an_earlier_tries_blobs_under_the_shared_lock(tmp_path, monkeypatch):
    (tmp_path / "source" / "b").mkdir(parents=True)
    (tmp_path / "source" / "b" / "x.txt").write_text("x")
    local, other = LocalLocation(tmp_path / "local"), LocalLocation(tmp_path / "other")
    take_snapshot(LocalFolderSource(tmp_path / "source"), BackupWriter([local], BackupType.STORAGE, "20261102T000000Z"),
                  dag_id="t", run_id="t")
    copy = storage_producer.copy_snapshot_blobs
    locked_while_copying = []

    def watched(manifest, source, destination):
        locked_while_copying.append(bool(live_locks(destination, utc_now())))
        copy(manifest, source, destination)

    monkeypatch.setattr(storage_producer, "copy_snapshot_blobs", watched)
    take_snapshot(LocalFolderSource(tmp_path / "source"),
                  BackupWriter([local, other], BackupType.STORAGE, "20261102T000000Z"), dag_id="t", run_id="t")
    assert locked_while_copying == [True]
