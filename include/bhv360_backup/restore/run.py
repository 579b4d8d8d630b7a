"""Carry out a validated restore plan: database first, then storage, then configuration."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyrage.x25519 import Identity

from bhv360_backup.errors import BackupError
from bhv360_backup.locations.base import Location
from bhv360_backup.locations.local import LocalWriter
from bhv360_backup.postgres.client import PgTarget, find_client
from bhv360_backup.postgres.supabase import project_data
from bhv360_backup.repository.catalog import has_manifest, read_manifest
from bhv360_backup.repository.config import CONFIG_ARTIFACT, PROJECT_SECRETS_ARTIFACT
from bhv360_backup.repository.database import (
    ROLES_ARTIFACT,
    dump_artifact,
    read_access_model,
    read_vault_secrets,
)
from bhv360_backup.repository.fullset import storage_cross_check
from bhv360_backup.repository.layout import BackupType, artifact_key
from bhv360_backup.repository.locks import shared_lock
from bhv360_backup.repository.manifest import Manifest
from bhv360_backup.repository.snapshots import read_index
from bhv360_backup.repository.verify import plain_chunks, read_back, read_checked_artifact
from bhv360_backup.restore.config import restore_config
from bhv360_backup.restore.database import (
    TargetState,
    apply_roles,
    check_access,
    create_extensions,
    marked_while_restoring,
    missing_extensions,
    preflight,
    project_target_problems,
    restore_dump,
    restore_vault_secrets,
)
from bhv360_backup.restore.pitr import ChainPlan, ReplayMismatch, objects_at, outside_change_stream, replay
from bhv360_backup.restore.plan import ComponentPlan, RestorePlan
from bhv360_backup.restore.project import apply_project, backup_state, differences, read_state
from bhv360_backup.restore.request import RestoreRequest
from bhv360_backup.restore.storage import StorageSink, restore_snapshot
from bhv360_backup.restore.validate import compare_database, database_stats
from bhv360_backup.streams import ProgressLog

log = logging.getLogger(__name__)


class RestoreMismatch(BackupError):
    """The restore wrote everything, but the target differs from the backup; ``report`` holds the evidence."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class RestoreTargets:
    """Where a restore writes; resolved (and checked) by the caller."""

    database: PgTarget | None
    sink: StorageSink | None
    work_dir: Path
    set_variable: Callable[[str, str], None] | None = None
    pg_bin_dir: str = ""
    jobs: int = 2
    parallelism: int = 8
    identities: Sequence[Identity] = ()
    project: Any = None  # the Management API of the project a config restore applies the project to


def verified_local_file(
    location: Location, manifest: Manifest, path: str, staging: Path, identities: Sequence[Identity] = ()
) -> Path:
    """A local file holding the artifact's plain bytes, checked against its manifest: the local copy
    itself, or a download (decrypted if encrypted) into ``staging``, which the caller removes."""
    key = artifact_key(manifest.type, manifest.backup_id, path)
    artifact = manifest.artifact(path)
    in_place = location.local_path(key)
    if in_place is not None and not artifact.encrypted and not artifact.compressed:
        read_back(location, key, artifact)
        return in_place
    target = staging / manifest.backup_id / path
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # plain_chunks checks every byte against the manifest; the scratch copy needs no fsync
    writer = LocalWriter(target, durable=False)
    progress = ProgressLog(f"staging {key}", total=artifact.plain_size or artifact.size)
    staged = 0
    try:
        for chunk in plain_chunks(location, key, artifact, identities):
            writer.write(chunk)
            staged += len(chunk)
            progress(staged)
        writer.commit()
    except OSError as error:
        writer.abort()
        raise BackupError(f"cannot stage {key} locally: {error}") from None
    except BaseException:
        writer.abort()
        raise
    return target


def ready_target(component: ComponentPlan, details: dict[str, Any], request: RestoreRequest,
                 target: PgTarget) -> TargetState:
    """The target database's state, once it is known to take the backup (its grants, policies,
    extensions; into a project, its Vault secrets and a place free of its tables), and the restoring user
    to have every right the restore uses (every problem named together in the error otherwise)."""
    state = TargetState.read(target)
    summary = details.get("access")
    problems = preflight(summary, state, supabase=request.supabase_target, restore_roles=request.restore_roles,
                         owner_map=request.owner_map, replica_role=request.supabase_target or bool(component.chain))
    if request.supabase_target:
        problems += project_target_problems(details, target)
    if problems:
        raise BackupError(f"cannot restore database backup {component.backup_id} into {target.describe()}: "
                          + "; ".join(problems))
    return state


def _ordered(locations: Mapping[str, Location], first: str) -> list[Location]:
    return [locations[first]] + [location for name, location in locations.items() if name != first]


def restore_database_component(
    component: ComponentPlan, request: RestoreRequest, locations: Mapping[str, Location], targets: RestoreTargets
) -> dict[str, Any]:
    """Restore a database backup, then its access model; fail (after the data is in) on any difference
    in rows, checksums, grants, policies, RLS, row visibility or sign-in data, listed per object."""
    if targets.database is None:
        raise BackupError("no target database for the database restore")
    location = locations[component.location]
    manifest = read_manifest(location, BackupType.DATABASE, component.backup_id)
    major = int(manifest.details["server_version"].split(".")[0])
    summary = manifest.details.get("access")
    state = ready_target(component, manifest.details, request, targets.database)
    vault = manifest.details.get("vault") if request.supabase_target else None
    staging = targets.work_dir / "staging"
    staging.mkdir(parents=True, exist_ok=True, mode=0o700)
    started = time.monotonic()
    report: dict[str, Any] = {"backup_id": component.backup_id, "target": targets.database.describe()}
    with marked_while_restoring(targets.database, component.backup_id, report):
        try:
            dump = verified_local_file(location, manifest, dump_artifact(manifest), staging, targets.identities)
            model = read_access_model(location, manifest, targets.identities)
            if request.supabase_target and summary:
                report["extensions_created"] = create_extensions(targets.database, summary["extensions"], state)
                if report["extensions_created"]:
                    report["written"].append("extensions")
            psql = find_client("psql", major, targets.pg_bin_dir)
            if request.restore_roles:
                roles = verified_local_file(location, manifest, ROLES_ARTIFACT, staging, targets.identities)
                report["roles_errors"] = apply_roles(roles, targets.database, psql)
                report["written"].append("roles")
            skipped = restore_dump(dump, targets.database, find_client("pg_restore", major, targets.pg_bin_dir),
                                   jobs=targets.jobs, no_owner=request.no_owner or bool(request.owner_map),
                                   supabase=request.supabase_target, work_dir=staging, state=state, psql=psql)
            report["written"].append("schema and data")
            if skipped:
                report["event_triggers_not_restored"] = skipped
        finally:
            shutil.rmtree(staging / manifest.backup_id, ignore_errors=True)  # downloads and decrypted copies
        problems = compare_database(manifest.details, database_stats(targets.database), supabase=request.supabase_target)
        report.update(seconds=round(time.monotonic() - started, 1), tables=len(manifest.details.get("table_rows", {})),
                      rows=sum(manifest.details.get("table_rows", {}).values()))
        if model is None:
            report["access"] = {"checked": False, "reason": "the backup was made before access models were recorded (0.3)"}
        else:
            check = check_access(targets.database, model, manifest.details.get("table_rows", {}),
                                 supabase=request.supabase_target, owner_map=request.owner_map,
                                 platform_event_triggers=not report.get("event_triggers_not_restored"))
            report["access"] = {"checked": True, **check.to_dict()}
            report["written"].append("access model")
            problems += check.differences
        if vault and vault["kept"]:
            report["vault"], differences = restore_vault_secrets(
                targets.database, read_vault_secrets(location, manifest, targets.identities) or [], vault["secrets"])
            problems += differences
            report["written"].append("vault secrets")
        elif vault:
            report["manual_steps"] = [f"vault secret {name}: create it by hand (backups were not encrypted, so its "
                                      "value was not kept)" for name in sorted(vault["secrets"])]
        if problems:
            raise RestoreMismatch(f"restored database does not match backup {component.backup_id}: "
                                  + "; ".join(problems[:20]), report)
        if component.chain:
            chain = ChainPlan.from_dict(component.chain)
            try:
                replayed = replay(targets.database, manifest, chain, locations, targets.identities,
                                  restored=project_data if request.supabase_target else None)
            except ReplayMismatch as mismatch:
                raise RestoreMismatch(f"point-in-time replay over backup {component.backup_id}: {mismatch}", report) from None
            report["written"].append("point-in-time replay")
            report["point_in_time"] = {"until": chain.until, "chain_reaches": chain.reaches,
                                       "reflects": replayed.reached or manifest.details["chain"]["snapshot_at"],
                                       **replayed.to_dict()}
            if outside := outside_change_stream(manifest.details):
                report["point_in_time"]["as_of_the_dump"] = outside
                log.warning("point-in-time restore: %s", outside)
            if replayed.stopped and not request.accept_earlier_point:
                raise RestoreMismatch(f"point-in-time replay over backup {component.backup_id} stopped at "
                                      f"{report['point_in_time']['reflects']}, before the moment asked for: "
                                      f"{replayed.stopped}. The target holds that earlier moment; set "
                                      "accept_earlier_point to accept it", report)
            report["seconds"] = round(time.monotonic() - started, 1)
        return report


def _unlocked(location: Location, reason: str) -> None:
    log.warning("%s: the restore reads it without a lock (%s): keep garbage collection from running meanwhile",
                location.name, reason)


def restore_storage_component(
    component: ComponentPlan, locations: Mapping[str, Location], targets: RestoreTargets,
    only: set[tuple[str, str]] | None = None, rows: set[tuple[str, str]] | None = None,
    accept_earlier: bool = False,
) -> dict[str, Any]:
    """Restore a storage snapshot, moved on to a point in time by its chain's object events when planned;
    ``rows``: the ``storage.objects`` names of the database restored with it, which say which objects
    exist at that moment (deletes included, named or not)."""
    if targets.sink is None:
        raise BackupError("no storage target for the storage restore")
    ordered = _ordered(locations, component.location)
    manifest = read_manifest(ordered[0], BackupType.STORAGE, component.backup_id)
    started = time.monotonic()
    entries, extra, buckets = None, {}, None
    if component.chain:
        chain = ChainPlan.from_dict(component.chain)
        found = objects_at(list(read_index(ordered[0], manifest, targets.identities)), manifest, chain, locations,
                           targets.identities)
        entries, unnamed, buckets = found.entries, found.unnamed, found.buckets
        if found.unavailable and not accept_earlier:
            named = ", ".join(f"{name} (written {moment})" for name, moment in list(found.unavailable.items())[:20])
            raise BackupError(f"storage as at {chain.until}: {len(found.unavailable)} object(s) had a version then "
                              f"that was never captured (overwritten again or deleted before the capture read it): "
                              f"{named}. Choose another moment, or set accept_earlier_point to restore the older "
                              "version of each (the report names them)")
        extra = {"point_in_time": {"until": chain.until, "chain_reaches": chain.reaches, "segments": len(chain.segments),
                                   "objects": len(entries), "unnamed_deletes": unnamed[:20] if rows is None else [],
                                   **({"older_than_the_moment": found.unavailable} if found.unavailable else {})}}
        if rows is not None:  # the restored database says which objects exist at that moment
            known = {(entry.bucket, entry.path) for entry in entries}
            extra["storage_objects"] = storage_cross_check(rows, known)
            entries = [entry for entry in entries if (entry.bucket, entry.path) in rows]
    # a restore reads blobs for hours: garbage collection must wait, as for a run that adds them
    with shared_lock(ordered, f"restore of {component.backup_id}", unreachable=_unlocked):
        result = restore_snapshot(manifest, ordered, targets.sink, parallelism=targets.parallelism, only=only,
                                  identities=targets.identities, entries=entries, buckets=buckets)
    report = {"backup_id": component.backup_id, "target": targets.sink.describe(),
              "seconds": round(time.monotonic() - started, 1), **result.to_dict(), **extra}
    problems = result.failed + result.refused + result.check_problems
    if problems:
        raise BackupError(f"storage restore of {component.backup_id} incomplete: " + "; ".join(problems[:10]))
    return report


def restore_config_component(
    component: ComponentPlan, locations: Mapping[str, Location], targets: RestoreTargets
) -> dict[str, Any]:
    location = locations[component.location]
    manifest = read_manifest(location, BackupType.CONFIG, component.backup_id)
    document = json.loads(read_checked_artifact(location, manifest, CONFIG_ARTIFACT, targets.identities))
    report = {"backup_id": component.backup_id, **restore_config(
        document, database=targets.database, sink=targets.sink,
        files_folder=targets.work_dir / "config-files", set_variable=targets.set_variable)}
    if targets.project is not None:
        secrets = {}
        if any(artifact.path == PROJECT_SECRETS_ARTIFACT for artifact in manifest.artifacts):
            secrets = json.loads(read_checked_artifact(location, manifest, PROJECT_SECRETS_ARTIFACT, targets.identities))
        report["project"] = {"target": targets.project.describe(), **apply_project(
            _project_section(document, component.backup_id, targets.project), secrets, targets.project,
            lambda artifact: [read_checked_artifact(location, manifest, artifact, targets.identities)],
            manual_steps=manifest.details.get("manual_steps", [])).to_dict()}
    return report


def _project_section(document: Mapping[str, Any], backup_id: str, project: Any) -> Mapping[str, Any]:
    """A config backup's Supabase project, or why there is none to apply to ``project``."""
    if "project" not in document:
        raise BackupError(f"config backup {backup_id} holds no Supabase project configuration (made without the "
                          f"connection bhv360_supabase_management): nothing to apply to {project.describe()}")
    return document["project"]


def _note_project_differences(plan: RestorePlan, locations: Mapping[str, Location], targets: RestoreTargets) -> None:
    component = plan.component("config")
    if component is None or targets.project is None:
        return
    location = locations[component.location]
    manifest = read_manifest(location, BackupType.CONFIG, component.backup_id)
    document = json.loads(read_checked_artifact(location, manifest, CONFIG_ARTIFACT, targets.identities))
    section = _project_section(document, component.backup_id, targets.project)
    settings, manual = differences(backup_state(section), read_state(targets.project))
    plan.notes.append(f"{targets.project.describe()}: will set {len(settings)} setting(s) that differ"
                      + (f": {', '.join(settings)}" if settings else ""))
    if manual:
        plan.notes.append(f"{targets.project.describe()}: {len(manual)} setting(s) differ that only an operator can "
                          f"set: {', '.join(manual)}")


def check_targets(
    plan: RestorePlan, request: RestoreRequest, locations: Mapping[str, Location], targets: RestoreTargets
) -> None:
    """Before anything is written: the target database can take the backup's grants, policies and
    extensions (every problem named together), and the plan notes what the restore will add, and every
    project setting it will set."""
    _note_project_differences(plan, locations, targets)
    component = plan.component("database")
    if component is None or targets.database is None:
        return
    manifest = read_manifest(locations[component.location], BackupType.DATABASE, component.backup_id)
    summary = manifest.details.get("access")
    state = ready_target(component, manifest.details, request, targets.database)
    if summary is None:
        plan.notes.append(f"database backup {component.backup_id} predates access models: grants are restored, "
                          "not compared")
        return
    missing = [extension["name"] for extension in missing_extensions(summary["extensions"], state)]
    if missing and request.supabase_target:
        plan.notes.append(f"will create extension(s) {', '.join(missing)} in the target")
    if request.owner_map:
        plan.notes.append("objects of " + ", ".join(f"{owner} will be owned by {role}"
                                                    for owner, role in sorted(request.owner_map.items())))
    if component.chain and (outside := outside_change_stream(manifest.details)):
        plan.notes.append(outside)
    plan.notes.append(f"then checks {summary['objects']} objects' grants, policies and RLS and {summary['probes']} "
                      "row-visibility probes against the backup")


def execute_plan(
    plan: RestorePlan, request: RestoreRequest, locations: Mapping[str, Location], targets: RestoreTargets
) -> dict[str, Any]:
    """Restore each component of the plan; the report says what was done, the error what was not."""
    report: dict[str, Any] = {"plan": plan.describe()}
    for name in ("database", "storage", "config"):
        component = plan.component(name)
        if component is None:
            continue
        log.info("restoring %s backup %s from %s", name, component.backup_id, component.location)
        try:
            if name == "database":
                report[name] = restore_database_component(component, request, locations, targets)
            elif name == "storage":
                rows = restored_rows(targets) if plan.component("database") and component.chain else None
                report[name] = restore_storage_component(component, locations, targets, rows=rows,
                                                         accept_earlier=request.accept_earlier_point)
            else:
                report[name] = restore_config_component(component, locations, targets)
        except RestoreMismatch as mismatch:
            mismatch.report = {**report, name: mismatch.report}
            raise
    if plan.component("database") and plan.component("storage") and not plan.component("storage").chain:
        check_storage_rows(plan, locations, targets, report)
    return report


def restored_rows(targets: RestoreTargets) -> set[tuple[str, str]] | None:
    """The ``storage.objects`` names in the restored database, or None when it has no such table."""
    if targets.database is None:
        return None
    with targets.database.connect() as connection:
        if connection.execute("SELECT to_regclass('storage.objects')").fetchone()[0] is None:
            return None
        return {tuple(row) for row in connection.execute("SELECT bucket_id, name FROM storage.objects").fetchall()}


def check_storage_rows(
    plan: RestorePlan, locations: Mapping[str, Location], targets: RestoreTargets, report: dict[str, Any]
) -> None:
    """After a database and storage restore: ``storage.objects`` rows in the target against the restored
    files (rows without a file, files without a row), as the full backup checked them at backup time.
    Restored from one full set, the result must equal what the set recorded."""
    rows = restored_rows(targets)
    if rows is None:
        return
    component = plan.component("storage")
    location = locations[component.location]
    manifest = read_manifest(location, BackupType.STORAGE, component.backup_id)
    files = {(entry.bucket, entry.path) for entry in read_index(location, manifest, targets.identities)}
    check = storage_cross_check(rows, files)
    report["storage_objects"] = check
    if not plan.full_set or any(c.applied_newer or c.chain for c in plan.components):
        return  # database and storage from different moments: the difference is reported, not judged
    recorded = next(read_manifest(location, BackupType.FULL, plan.full_set) for location in locations.values()
                    if has_manifest(location, BackupType.FULL, plan.full_set))
    expected = recorded.details["consistency"]["storage_objects"]
    if not expected.get("checked"):
        return
    keys = ("rows_without_file", "files_without_row")
    if any(check[key] != expected[key] for key in keys):
        raise RestoreMismatch(
            "restored storage.objects rows and files differ from full backup " + plan.full_set + ": "
            + ", ".join(f"{key.replace('_', ' ')} {check[key]} (the backup {expected[key]})" for key in keys)
            + f"; e.g. {', '.join([*check['examples_rows_without_file'], *check['examples_files_without_row']][:5])}",
            report)
