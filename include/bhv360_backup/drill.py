"""The weekly restore drill: the newest database backup into a scratch database it creates and
drops, and a sample of the newest storage snapshot into a scratch folder, each checked."""

from __future__ import annotations

import hashlib
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg import sql
from pyrage.x25519 import Identity

from bhv360_backup.errors import BackupError
from bhv360_backup.locations.base import Location
from bhv360_backup.postgres.client import PgTarget, find_client, server_major
from bhv360_backup.repository.catalog import has_manifest, list_backups, read_manifest
from bhv360_backup.repository.config import read_config
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import parse_iso
from bhv360_backup.repository.snapshots import read_index
from bhv360_backup.restore.pitr import chain_base
from bhv360_backup.restore.plan import build_plan, choose_copy
from bhv360_backup.restore.project import backup_state, differences, read_state
from bhv360_backup.restore.request import parse_request
from bhv360_backup.restore.run import RestoreTargets, restore_database_component, restore_storage_component
from bhv360_backup.restore.storage import FolderSink

DEFAULT_SAMPLE = 50


def _newest(locations: Mapping[str, Location], backup_type: BackupType) -> str | None:
    ids = {backup_id for location in locations.values() for backup_id in list_backups(location, backup_type)}
    return max(ids) if ids else None


def sample_objects(
    location: Location, manifest, size: int, identities: Sequence[Identity] = ()
) -> set[tuple[str, str]]:
    """A deterministic sample of the snapshot's objects (the same for the same snapshot)."""
    entries = sorted(read_index(location, manifest, identities),
                     key=lambda e: hashlib.sha256(f"{manifest.backup_id}/{e.bucket}/{e.path}".encode()).digest())
    return {(e.bucket, e.path) for e in entries[:size]}


@contextmanager
def scratch_database(server: PgTarget, scratch: PgTarget) -> Iterator[None]:
    """A database the drill creates and drops, whatever happens in between."""
    with server.connect(autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch.dbname)))
    try:
        yield
    finally:
        with server.connect(autocommit=True) as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch.dbname)))


def between_the_newest_segments(locations: Sequence[Location]) -> datetime | None:
    """The moment halfway between the two newest incremental segments' ends (or, when a database backup
    that starts a chain was taken between them, between it and the newest end), when there are two."""
    ids = sorted({backup_id for location in locations for backup_id in list_backups(location, BackupType.INCREMENTAL)})
    if len(ids) < 2:
        return None
    ends = []
    for backup_id in ids[-2:]:
        location = next(loc for loc in locations if has_manifest(loc, BackupType.INCREMENTAL, backup_id))
        ends.append(parse_iso(read_manifest(location, BackupType.INCREMENTAL, backup_id).details["captured_until"]))
    base = chain_base(locations, ends[1])
    if base is None:
        return None
    location = next(loc for loc in locations if has_manifest(loc, BackupType.DATABASE, base))
    start = max(ends[0], parse_iso(read_manifest(location, BackupType.DATABASE, base).details["chain"]["snapshot_at"]))
    return start + (ends[1] - start) / 2


def _drill_point_in_time(ordered: Sequence[Location], locations: Mapping[str, Location], server: PgTarget,
                         targets: RestoreTargets, pg_restore: str, moment: datetime) -> dict[str, Any]:
    """Restore the database to ``moment`` (the newest chain base before it, then the segments) into a
    second scratch database: the whole point-in-time path, checked change by change."""
    request = parse_request({"type": "database", "paths": {"database": "latest"}, "point_in_time": moment.isoformat()},
                            backup_root=str(targets.work_dir), bucket="-")
    plan = build_plan(request, ordered, {}, pg_restore, targets.identities)
    scratch = server.with_dbname(f"bhv360_drill_{uuid.uuid4().hex[:12]}")
    with scratch_database(server, scratch):
        report = restore_database_component(plan.components[0], request, locations,
                                            replace(targets, database=scratch))
    replayed = report.get("point_in_time", {})
    return {"until": moment.isoformat(), "reflects": replayed.get("reflects"), "segments": replayed.get("segments"),
            "transactions": replayed.get("transactions"), "stopped": replayed.get("stopped"),
            "seconds": report["seconds"]}


def project_drift(locations: Mapping[str, Location], project: Any, identities: Sequence[Identity] = ()
                  ) -> dict[str, Any] | None:
    """How the live project (``project``: its Management API) differs from the newest config backup that
    holds it: settings changed in the dashboard since, field by field (secrets as changed or not)."""
    for backup_id in reversed(sorted({i for location in locations.values() for i in list_backups(location, BackupType.CONFIG)})):
        location = next(location for location in locations.values() if has_manifest(location, BackupType.CONFIG, backup_id))
        manifest = read_manifest(location, BackupType.CONFIG, backup_id)
        if "project_fields" not in manifest.details:
            continue
        document = read_config(location, manifest, identities)
        settings, manual = differences(read_state(project), backup_state(document["project"]))  # backup -> live
        return {"config_backup": backup_id, "project": project.describe(), "drift": {**settings, **manual}}
    return None


def run_drill(
    locations: Mapping[str, Location], server: PgTarget, work_dir: Path, *, pg_bin_dir: str = "",
    sample_size: int = DEFAULT_SAMPLE, identities: Sequence[Identity] = (), project: Any = None,
) -> dict[str, Any]:
    """Restore and check (decrypting with ``identities``); the scratch database and folder are
    removed whatever happens. With ``project`` (the live project's Management API), report its drift
    from the newest config backup."""
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
    pg_restore = find_client("pg_restore", server_major(server), pg_bin_dir)
    with scratch_database(server, scratch):
        component = choose_copy(ordered, BackupType.DATABASE, database_id, pg_restore, identities)
        report["database"] = restore_database_component(component, request, locations, targets)
    moment = between_the_newest_segments(ordered)
    if moment is not None:
        report["point_in_time"] = _drill_point_in_time(ordered, locations, server, targets, pg_restore, moment)
    storage_id = _newest(locations, BackupType.STORAGE)
    if storage_id is not None:
        folder = work_dir / "storage"
        try:
            component = choose_copy(ordered, BackupType.STORAGE, storage_id, None, identities)
            location = locations[component.location]
            manifest = read_manifest(location, BackupType.STORAGE, storage_id)
            sample = sample_objects(location, manifest, sample_size, identities)
            targets.sink = FolderSink(folder)
            report["storage"] = restore_storage_component(component, locations, targets, only=sample)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(work_dir, ignore_errors=True)
    if project is not None:
        report["project"] = project_drift(locations, project, identities)
    report["seconds"] = round(time.monotonic() - started, 1)
    return report
