"""Locks of a location, after restic's: every run that adds blobs holds a lock object of its own
(``locks/<kind>-<uuid>.json``), shared with other such runs; garbage collection holds an exclusive
one and deletes only while no other lock lives, checking again right before each batch of deletions.

Both sides write their lock first and look for the other's second, so of a run and a garbage
collection starting together at least one sees the other: the run waits, the collection stops.
A lock names its run and expires on its own, so a killed run blocks nothing forever; a living run
writes its lock again every hour, so however long it works, its lock does not expire under it.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from bhv360_backup.errors import BackupError, first_line
from bhv360_backup.locations.base import ArtifactMissing, Location
from bhv360_backup.pools import repeated
from bhv360_backup.repository.manifest import iso, parse_iso, utc_now

log = logging.getLogger(__name__)

LOCKS_PREFIX = "locks/"
SHARED_LOCK_TIME = timedelta(hours=24)
SHARED_LOCK_REFRESH = timedelta(hours=1)
EXCLUSIVE_LOCK_TIME = timedelta(minutes=15)
WAIT_FOR_EXCLUSIVE = timedelta(minutes=30)
POLL_SECONDS = 2.0


@dataclass(frozen=True)
class LockInfo:
    key: str
    run_id: str
    exclusive: bool
    expires_at: datetime

    def describe(self) -> str:
        return f"{'exclusive' if self.exclusive else 'shared'} lock {self.key} of run {self.run_id}"


def _write(location: Location, key: str, run_id: str, exclusive: bool, lifetime: timedelta) -> None:
    body = {"run_id": run_id, "exclusive": exclusive, "created_at": iso(utc_now()),
            "expires_at": iso(utc_now() + lifetime)}
    location.put_bytes(key, json.dumps(body, sort_keys=True).encode())


def live_locks(location: Location, now: datetime) -> list[LockInfo]:
    """The locks of ``location`` that have not expired. A lock that cannot be read counts as shared
    and alive until a day after it was written: when unsure, garbage collection waits."""
    found = []
    for item in location.iter_objects(LOCKS_PREFIX):
        try:
            body = json.loads(location.read_bytes(item.key))
            info = LockInfo(item.key, str(body["run_id"]), bool(body.get("exclusive", False)),
                            parse_iso(body["expires_at"]))
        except ArtifactMissing:
            continue  # released while we listed
        except (ValueError, KeyError, TypeError) as error:
            log.warning("%s: lock %s unreadable (%s)", location.name, item.key, error)
            info = LockInfo(item.key, "?", False, item.last_modified + SHARED_LOCK_TIME)
        if info.expires_at > now:
            found.append(info)
    return found


def _release(location: Location, key: str) -> None:
    try:
        location.delete(key)
    except Exception as error:  # noqa: BLE001 - the lock expires by itself
        log.warning("could not release %s in %s: %s", key, location.name, first_line(error))


def _refresh(locations: Sequence[Location], key: str, run_id: str) -> None:
    for location in locations:
        try:
            _write(location, key, run_id, False, SHARED_LOCK_TIME)
        except Exception as error:  # noqa: BLE001 - tried again at the next refresh
            log.warning("%s: could not refresh lock %s: %s", location.name, key, first_line(error))


@contextmanager
def shared_lock(locations: Sequence[Location], run_id: str,
                unreachable: Callable[[Location, str], None] | None = None,
                refresh_every: timedelta = SHARED_LOCK_REFRESH) -> Iterator[None]:
    """Hold a shared lock in every location while adding or reading blobs, written again every
    ``refresh_every``; waits (up to 30 minutes) while a garbage collection holds its exclusive lock.
    A location the lock cannot be written to is handed to ``unreachable`` (without it, that fails)."""
    key = f"{LOCKS_PREFIX}snapshot-{uuid.uuid4().hex}.json"
    held = []
    for location in list(locations):
        try:
            _write(location, key, run_id, False, SHARED_LOCK_TIME)
        except Exception as error:
            if unreachable is None:
                raise
            unreachable(location, f"lock not writable: {first_line(error)}")
            continue
        held.append(location)
    try:
        with repeated(lambda: _refresh(held, key, run_id), refresh_every.total_seconds(), f"lock-refresh-{key}"):
            deadline = time.monotonic() + WAIT_FOR_EXCLUSIVE.total_seconds()
            for location in held:
                while exclusive := [lock for lock in live_locks(location, utc_now()) if lock.exclusive]:
                    if time.monotonic() > deadline:
                        raise BackupError(f"{location.name}: {exclusive[0].describe()} has held the blobs for over "
                                          f"{WAIT_FOR_EXCLUSIVE}; remove it if that run is gone")
                    log.info("%s: waiting for %s to finish", location.name, exclusive[0].describe())
                    time.sleep(POLL_SECONDS)
            yield
    finally:
        for location in held:
            _release(location, key)


class ExclusiveLock:
    """Held by garbage collection in one location: :meth:`others` lists any other live lock, and is
    asked again right before each batch of deletions (which also refreshes this lock's expiry)."""

    def __init__(self, location: Location, run_id: str) -> None:
        self.location = location
        self.run_id = run_id
        self.key = f"{LOCKS_PREFIX}gc-{uuid.uuid4().hex}.json"

    def others(self) -> list[LockInfo]:
        _write(self.location, self.key, self.run_id, True, EXCLUSIVE_LOCK_TIME)
        return [lock for lock in live_locks(self.location, utc_now()) if lock.key != self.key]


@contextmanager
def exclusive_lock(location: Location, run_id: str) -> Iterator[ExclusiveLock]:
    lock = ExclusiveLock(location, run_id)
    try:
        yield lock
    finally:
        _release(location, lock.key)
