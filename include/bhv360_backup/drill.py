"""The weekly restore drill: the newest database backup into a scratch database it creates and
drops, and a sample of the newest storage snapshot into a scratch folder, each checked."""

from __future__ import annotations

import hashlib
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from psycopg import sql
from pyrage.x25519 import Identity

from bhv360_backup.errors import BackupError
from bhv360_backup.locations.base import Location
from bhv360_backup.postgres.client import PgTarget, find_client, server_major
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.snapshots import read_index
from bhv360_backup.restore.plan import choose_copy
from bhv360_backup.restore.request import parse_request
from bhv360_backup.restore.run import RestoreTargets, restore_database_component, restore_storage_component
from bhv360_backup.restore.storage import FolderSink

DEFAULT_SAMPLE = 50


def _newest(locations: Mapping[str, Location], backup_type: BackupType) -> str | None:
    ids = {backup_id for location in locations.values() for backup_id in location.list_backups(backup_type)}
    return max(ids) if ids else None


def sample_objects(
    location: Location, manifest, size: int, identities: Sequence[Identity] = ()
) -> set[tuple[str, str]]:
    """A deterministic sample of the snapshot's objects (the same for the same snapshot)."""
    entries = sorted(read_index(location, manifest, identities),
                     key=lambda e: hashlib.sha256(f"{manifest.backup_id}/{e.bucket}/{e.path}".encode()).digest())
    return {(e.bucket, e.path) for e in entries[:size]}


def run_drill(
    locations: Mapping[str, Location], server: PgTarget, work_dir: Path, *, pg_bin_dir: str = "",
    sample_size: int = DEFAULT_SAMPLE, identities: Sequence[Identity] = (),
) -> dict[str, Any]:
    """Restore and check (decrypting with ``identities``); the scratch database and folder are
    removed whatever happens."""
    report: dict[str, Any] = {}
    ordered = sorted(locations.values(), key=lambda location: location.name != "local")
    database_id = _newest(locations, BackupType.DATABASE)
    if database_id is None:
        raise BackupError("restore drill: there is no database backup to restore")
    scratch = server.with_dbname(f"bhv360_drill_{uuid.uuid4().hex[:12]}")
    request = parse_request({"type": "database", "paths": {"database": database_id}},
                            backup_root=str(work_dir), bucket="-")
    targets = RestoreTargets(database=scratch, sink=None, work_dir=work_dir, pg_bin_dir=pg_bin_dir,
                             identities=identities)
    started = time.monotonic()
    try:
        with server.connect(autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch.dbname)))
        pg_restore = find_client("pg_restore", server_major(server), pg_bin_dir)
        component = choose_copy(ordered, BackupType.DATABASE, database_id, pg_restore, identities)
        report["database"] = restore_database_component(component, request, locations, targets)
    finally:
        with server.connect(autocommit=True) as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch.dbname)))
    storage_id = _newest(locations, BackupType.STORAGE)
    if storage_id is not None:
        folder = work_dir / "storage"
        try:
            component = choose_copy(ordered, BackupType.STORAGE, storage_id, None, identities)
            location = locations[component.location]
            manifest = location.read_manifest(BackupType.STORAGE, storage_id)
            sample = sample_objects(location, manifest, sample_size, identities)
            targets.sink = FolderSink(folder)
            report["storage"] = restore_storage_component(component, locations, targets, only=sample)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(work_dir, ignore_errors=True)
    report["seconds"] = round(time.monotonic() - started, 1)
    return report
