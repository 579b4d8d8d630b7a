"""A seeded randomized differential test of storage restores to a moment: random uploads, overwrites,
moves and deletes (as the Storage server makes them: a file and its ``storage.objects`` row, the row's
metadata naming the version), captured at random points after a snapshot; the files at many moments
recorded; restores to a sample of those moments must equal the recorded files, or be refused exactly
where a version current then was never captured (overwritten again or deleted before the next capture).
``BHV360_SOAK_SEED`` picks the seed."""

from __future__ import annotations

import os
import random

import pytest

from bhv360_backup.errors import BackupError
from bhv360_backup.locations import LocalLocation
from tests.fixtures.chain import run
from tests.fixtures.storage_chain import BUCKET_ID, StorageChain

SEED = int(os.environ.get("BHV360_SOAK_SEED", "24"))
STEPS = int(os.environ.get("BHV360_SOAK_ROUNDS", "8")) * 5
SAMPLES = int(os.environ.get("BHV360_SOAK_SAMPLES", "3")) + 2


def test_storage_restores_to_random_moments_equal_the_recorded_files_or_are_refused_where_a_version_was_lost(
        logical_db, storage_api, tmp_path):
    rng = random.Random(SEED)
    files = StorageChain(logical_db, storage_api, [LocalLocation(tmp_path / "backups")], (), (), tmp_path)
    current: dict[str, bytes] = {}  # name -> content now
    version = 0

    def write(name: str) -> None:
        nonlocal version
        version += 1
        current[name] = f"%PDF {name} version {version}".encode()
        files.upload(name, current[name], etag=True)

    for name in ("a.pdf", "b.pdf"):
        write(name)
    files.start()
    moments = []  # (moment, files then)
    written: dict[str, bytes] = {}  # versions put since the last capture: lost if replaced before the next one
    lost: set[int] = set()  # moments with a version current then that no capture read

    def replaced(name: str) -> None:
        """``name``'s version is about to go: if no capture read it, every moment it was current is lost."""
        if name in written:
            version_then = written.pop(name)
            lost.update(index for index, (_, files_then) in enumerate(moments)
                        if files_then.get(f"{BUCKET_ID}/{name}") == version_then)

    for _ in range(STEPS):
        roll = rng.random()
        names = sorted(current)
        if roll < 0.55 or not names:
            name = f"org-{rng.randint(1, 3)}/doc-{rng.randint(1, 6)}.pdf" if roll < 0.35 or not names \
                else rng.choice(names)  # a new file, or an overwrite
            replaced(name)
            write(name)
            written[name] = current[name]
        elif roll < 0.7:
            name = rng.choice(names)
            replaced(name)
            files.remove(name)
            del current[name]
        elif roll < 0.8:
            old = rng.choice(names)
            new = f"archive/{old.rsplit('/', 1)[-1]}-{rng.randint(1, 99)}"
            if new in current:
                continue
            replaced(old)  # a move keeps the row's id and the bytes; the old name's version goes
            moved = storage_api.objects.pop((BUCKET_ID, old))
            storage_api.objects[(BUCKET_ID, new)] = moved
            run(logical_db, f"UPDATE storage.objects SET name = '{new}' WHERE id = '{moved['id']}'")
            current[new] = current.pop(old)
            written[new] = current[new]
        else:
            files.capture()
            written.clear()
            continue
        moments.append((run(logical_db, "SELECT 1"), {f"{BUCKET_ID}/{n}": data for n, data in current.items()}))
    files.capture()
    for index in rng.sample(range(len(moments)), min(SAMPLES, len(moments))):
        moment, expected = moments[index]
        if index in lost:
            with pytest.raises(BackupError, match="never captured"):
                files.restored_at(moment)
        else:
            assert files.restored_at(moment) == expected, f"seed {SEED}: the restore to moment {index} differs"
