"""Resolve a restore request against the locations and verify what it would use, before any write.

The plan names, for every component, the backup id, the location whose copy verified (the local
one first, S3 when the local copy is missing or damaged, with the reason), and the target. It is
plain JSON, passed from the validation task to the restore task.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from pyrage.x25519 import Identity

from bhv360_backup.errors import BackupError, ConfigurationError, first_line
from bhv360_backup.locations.base import Location
from bhv360_backup.repository.blobs import verify_snapshot_blobs
from bhv360_backup.repository.catalog import has_manifest, list_backups, read_manifest
from bhv360_backup.repository.database import dump_artifact
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.verify import pg_archive_check, verify_backup
from bhv360_backup.restore.pitr import chain_base, plan_chain, plan_storage_chain
from bhv360_backup.restore.request import PathSpec, RestoreRequest
from bhv360_backup.settings import NEEDS_IDENTITY

log = logging.getLogger(__name__)


@dataclass
class ComponentPlan:
    component: str
    backup_id: str
    location: str
    completed_at: str
    size: int
    fallback_reason: str | None = None
    applied_newer: bool = False
    chain: dict[str, Any] | None = None  # the incremental segments replayed after it (ChainPlan)


@dataclass
class RestorePlan:
    type: str
    components: list[ComponentPlan]
    targets: dict[str, str]
    full_set: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RestorePlan:
        return cls(**{**data, "components": [ComponentPlan(**c) for c in data["components"]]})

    def component(self, name: str) -> ComponentPlan | None:
        return next((c for c in self.components if c.component == name), None)

    def describe(self) -> list[str]:
        lines = [f"restore {self.type}" + (f" from full set {self.full_set}" if self.full_set else "")]
        for c in self.components:
            source = f"{c.location}" + (f" (fallback: {c.fallback_reason})" if c.fallback_reason else "")
            newer = ", newer than the full set" if c.applied_newer else ""
            lines.append(f"  {c.component} backup {c.backup_id} ({c.size:,} bytes, completed {c.completed_at}{newer})"
                         f" from {source} into {self.targets.get(c.component, '?')}")
            if c.chain:
                moment = c.chain["until"] or c.chain["reaches"]
                lines.append(f"  then {len(c.chain['segments'])} incremental segment(s): the result reflects every "
                             f"transaction committed up to {moment or 'the backup'}"
                             + (f" (the chain reaches {c.chain['reaches']})" if c.chain["until"] else "")
                             + (f"; stops early: {c.chain['stop']}" if c.chain["stop"] else ""))
        lines += [f"  note: {note}" for note in self.notes]
        return lines


def _ordered(locations: Sequence[Location], spec: PathSpec) -> list[Location]:
    """Local first, unless the request named the S3 copy."""
    if spec.kind == "s3":
        return sorted(locations, key=lambda location: location.name != "s3")
    return sorted(locations, key=lambda location: location.name != "local")


def _newest(locations: Sequence[Location], backup_type: BackupType) -> str | None:
    ids: set[str] = set()
    for location in locations:
        try:
            ids.update(list_backups(location, backup_type))
        except Exception as error:  # noqa: BLE001 - one unreachable location must not block a restore
            log.warning("cannot list %s backups in %s: %s", backup_type.value, location.name, error)
    return max(ids) if ids else None


def resolve_id(locations: Sequence[Location], backup_type: BackupType, spec: PathSpec) -> str:
    if spec.kind == "latest":
        newest = _newest(locations, backup_type)
        if newest is None:
            raise BackupError(f"there is no complete {backup_type.value} backup in any location")
        return newest
    return spec.backup_id


def choose_copy(
    locations: Sequence[Location], backup_type: BackupType, backup_id: str, pg_restore: str | None,
    identities: Sequence[Identity] = (),
) -> ComponentPlan:
    """The first location whose copy verifies in full (sha256 of every artifact, blobs present;
    encrypted artifacts decrypted with ``identities`` and their plain sha256 checked too). An S3 copy
    whose checksum S3 still keeps as the manifest recorded it is not downloaded here: the restore reads
    it once, checking every byte before it is used."""
    reasons = []
    found = False
    for location in locations:
        try:
            if not has_manifest(location, backup_type, backup_id):
                reasons.append(f"{location.name}: no manifest")
                continue
            found = True
            manifest = read_manifest(location, backup_type, backup_id)
        except Exception as error:  # noqa: BLE001 - try the other location
            reasons.append(f"{location.name}: {first_line(error)}")
            continue
        if not identities and any(artifact.encrypted for artifact in manifest.artifacts):
            raise ConfigurationError(f"{backup_type.value} backup {backup_id} is encrypted: restoring it needs "
                                     f"{NEEDS_IDENTITY}")
        checks = ({dump_artifact(manifest): pg_archive_check(pg_restore)}
                  if pg_restore and backup_type == BackupType.DATABASE else {})
        problems = [finding.problem for finding in verify_backup(location, manifest, deep=True, checks=checks,
                                                                 identities=identities, vouched=True)]
        if not problems and backup_type == BackupType.STORAGE:
            problems = verify_snapshot_blobs(location, manifest)[:3]
        if problems:
            reasons.append(f"{location.name}: {'; '.join(problems)}")
            continue
        fallback = "; ".join(reasons) if reasons else None
        if fallback:
            log.warning("using the %s copy of %s %s because %s", location.name, backup_type.value, backup_id, fallback)
        return ComponentPlan(backup_type.value, backup_id, location.name, manifest.to_dict()["completed_at"],
                             manifest.size, fallback)
    if not found:
        raise BackupError(f"{backup_type.value} backup {backup_id} does not exist in any location (no manifest)")
    raise BackupError(f"{backup_type.value} backup {backup_id} has no intact copy: {'; '.join(reasons)}")


@dataclass
class Resolution:
    """Which backup each component of a request names, before any copy is checked."""

    chosen: dict[str, tuple[str, PathSpec]]
    full_set: str | None = None
    notes: list[str] = field(default_factory=list)
    until: datetime | None = None  # a point-in-time restore's moment

    @property
    def backup_ids(self) -> str:
        return ",".join(backup_id for backup_id, _ in self.chosen.values())


def newest_before(locations: Sequence[Location], backup_type: BackupType, until: datetime) -> str | None:
    """The newest backup of a type whose data was taken at or before ``until``."""
    ids = sorted({backup_id for location in locations for backup_id in _listed(location, backup_type)}, reverse=True)
    for backup_id in ids:
        if backup_id[:16] > until.strftime("%Y%m%dT%H%M%SZ"):
            continue
        for location in locations:
            try:
                if read_manifest(location, backup_type, backup_id).data_time <= until:
                    return backup_id
                break
            except BackupError:
                continue
    return None


def _listed(location: Location, backup_type: BackupType) -> list[str]:
    try:
        return list_backups(location, backup_type)
    except Exception as error:  # noqa: BLE001 - one unreachable location must not block a restore
        log.warning("cannot list %s backups in %s: %s", backup_type.value, location.name, error)
        return []


def _resolve_at(request: RestoreRequest, locations: Sequence[Location], until: datetime) -> Resolution:
    resolution = Resolution({}, until=until)
    for name, spec in request.paths.items():
        backup_type = BackupType(name)
        newest = (chain_base(locations, until) if backup_type == BackupType.DATABASE else None) \
            or newest_before(locations, backup_type, until)
        if spec.kind != "latest":
            _refuse_if_later(locations, backup_type, spec.backup_id, until, newest)
            resolution.chosen[name] = (spec.backup_id, spec)
            continue
        backup_id = newest
        if backup_id is None:
            raise BackupError(f"there is no {name} backup made before {until.isoformat()} in any location")
        resolution.chosen[name] = (backup_id, spec)
    return resolution


def _refuse_if_later(locations: Sequence[Location], backup_type: BackupType, backup_id: str, until: datetime,
                     newest: str | None) -> None:
    """A backup named explicitly must have been taken at or before the moment asked for: its data would
    otherwise be from after that moment (the very state the operator wants to undo)."""
    for location in locations:
        try:
            taken = read_manifest(location, backup_type, backup_id).data_time
        except BackupError:
            continue
        if taken > until:
            instead = f"the newest {backup_type.value} backup before it is {newest}" if newest else \
                f"there is no {backup_type.value} backup before it"
            raise BackupError(f"{backup_type.value} backup {backup_id} was taken at {taken.isoformat()}, after "
                              f"point_in_time {until.isoformat()}: it cannot restore that moment; {instead}")
        return


def resolve(request: RestoreRequest, locations: Sequence[Location]) -> Resolution:
    """Resolve ``latest`` and paths to backup ids; a full ``latest`` takes the newest set and newer components;
    with ``point_in_time``, the newest backups made before that moment."""
    if request.point_in_time is not None:
        return _resolve_at(request, locations, request.point_in_time)
    if not (request.type == BackupType.FULL and all(spec.kind == "latest" for spec in request.paths.values())):
        return Resolution({name: (resolve_id(locations, BackupType(name), spec), spec)
                           for name, spec in request.paths.items()})
    full_set = _newest(locations, BackupType.FULL)
    if full_set is None:
        raise BackupError("there is no complete full backup in any location")
    resolution = Resolution({}, full_set)
    for name, backup_id in _full_set_components(locations, full_set).items():
        newest = _newest(locations, BackupType(name)) if name in ("database", "storage") else None
        if newest and newest > backup_id:
            resolution.notes.append(f"{name}: applying the newer backup {newest} after full set {full_set}")
            backup_id = newest
        resolution.chosen[name] = (backup_id, request.paths[name])
    return resolution


def build_plan(
    request: RestoreRequest,
    locations: Sequence[Location],
    targets: dict[str, str],
    pg_restore: str | None,
    identities: Sequence[Identity] = (),
    resolution: Resolution | None = None,
) -> RestorePlan:
    """Resolve every component (unless ``resolution`` is given) and verify the copy it would use; raise
    naming the first problem found."""
    resolution = resolution or resolve(request, locations)
    plans = []
    for name, (backup_id, spec) in resolution.chosen.items():
        plan = choose_copy(_ordered(locations, spec), BackupType(name), backup_id, pg_restore, identities)
        plan.applied_newer = any(note.startswith(f"{name}: applying") for note in resolution.notes)
        if name == "database" and (resolution.until is not None or spec.kind == "latest"):
            plan.chain = _database_chain(plan, request, locations, resolution, resolution.notes)
        if name == "storage" and (resolution.until is not None or spec.kind == "latest"):
            plan.chain = _storage_chain(plan, request, locations, resolution)
        plans.append(plan)
    return RestorePlan(request.type.value, plans, targets, resolution.full_set, resolution.notes)


def _database_chain(component: ComponentPlan, request: RestoreRequest, locations: Sequence[Location],
                    resolution: Resolution, notes: list[str]) -> dict[str, Any] | None:
    """The incremental segments after the database backup: up to ``point_in_time``, or with ``latest``
    as far as they go (the newest captured moment)."""
    by_name = {location.name: location for location in locations}
    manifest = read_manifest(by_name[component.location], BackupType.DATABASE, component.backup_id)
    has_chain = (manifest.details.get("chain") or {}).get("exists")
    if not has_chain:
        if resolution.until is None:
            return None
        if not request.accept_earlier_point:
            plan_chain(manifest, by_name, resolution.until, accept_earlier=False)  # raises, naming why
        notes.append(f"database: backup {component.backup_id} has no incremental chain; restoring it as of "
                     f"{manifest.details.get('snapshot_time')} (accept_earlier_point)")
        return None
    chain = plan_chain(manifest, by_name, resolution.until, accept_earlier=request.accept_earlier_point)
    if resolution.until is None and not chain.segments:
        return None
    return chain.to_dict()


def _storage_chain(component: ComponentPlan, request: RestoreRequest, locations: Sequence[Location],
                   resolution: Resolution) -> dict[str, Any] | None:
    """The object events after the storage snapshot, up to ``point_in_time`` or as far as they go."""
    by_name = {location.name: location for location in locations}
    snapshot = read_manifest(by_name[component.location], BackupType.STORAGE, component.backup_id)
    chain = plan_storage_chain(snapshot, by_name, resolution.until, accept_earlier=request.accept_earlier_point)
    if chain is None or (resolution.until is None and not chain.segments):
        return None
    return chain.to_dict()


def _full_set_components(locations: Sequence[Location], full_id: str) -> dict[str, str]:
    for location in locations:
        try:
            manifest = read_manifest(location, BackupType.FULL, full_id)
        except Exception:  # noqa: BLE001, S112 - the other location may have it
            continue
        return {name: component["backup_id"] for name, component in manifest.details["components"].items()}
    raise BackupError(f"full backup {full_id} has no readable manifest in any location")
