"""The restore request: the seed's body (and a ``bhv360_restore`` run's conf), parsed and checked.

``{"type": "full", "paths": {"database": "...", "storage": "...", "config": "..."}}`` plus the
optional fields of the contract. Every problem is collected and reported together, each naming
the field; nothing here touches a location or a target.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from bhv360_backup.errors import BackupError
from bhv360_backup.repository.layout import ID_PATTERN, BackupType, is_backup_id
from bhv360_backup.settings import RESTORE_DB_CONN_ID

COMPONENTS = {
    BackupType.DATABASE: ("database",),
    BackupType.STORAGE: ("storage",),
    BackupType.CONFIG: ("config",),
    BackupType.FULL: ("database", "storage", "config"),
}
KNOWN_FIELDS = {"type", "paths", "target_conn_id", "confirm_overwrite", "dry_run", "supabase_target",
                "storage_target", "restore_roles", "no_owner", "point_in_time", "accept_earlier_point", "owner_map",
                "target_project_conn_id"}
_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
_ROLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
MAX_PATH = 1024
_FLAGS = {"confirm_overwrite": False, "dry_run": False, "supabase_target": False, "restore_roles": False,
          "no_owner": True, "accept_earlier_point": False}

_PATH_SCHEMA = {
    "description": "'latest', a backup id, a path in the local root, or s3://<bucket>/<type>/<id>",
    "anyOf": [{"type": "string", "enum": ["latest"]},
              {"type": "string", "pattern": ID_PATTERN.pattern},
              {"type": "string", "minLength": 1, "maxLength": MAX_PATH}],
}
REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "paths"],
    "additionalProperties": False,
    "oneOf": [
        {"properties": {"type": {"const": backup_type.value},
                        "paths": {"required": list(components),
                                  "properties": {name: _PATH_SCHEMA for name in components}}}}
        for backup_type, components in COMPONENTS.items()
    ],
    "properties": {
        "type": {"type": "string", "enum": [t.value for t in COMPONENTS]},
        "paths": {"type": "object", "additionalProperties": False,
                  "properties": {name: _PATH_SCHEMA for name in ("database", "storage", "config")}},
        "target_conn_id": {"type": "string", "pattern": _CONN_ID.pattern},
        "target_project_conn_id": {"type": ["string", "null"], "pattern": _CONN_ID.pattern,
                                   "description": "config and full: the Management API connection of the project "
                                                  "the configuration and Edge Functions are applied to"},
        "storage_target": {"type": "string", "description": "'folder', 'folder:/path', 'supabase' or 'supabase:<conn id>'"},
        "owner_map": {"type": "object", "additionalProperties": {"type": "string", "pattern": _ROLE.pattern},
                      "description": "recorded owner -> target role, for owners the target lacks"},
        "point_in_time": {"type": ["string", "null"], "format": "date-time",
                          "description": "ISO 8601 with a zone: restore the state as it was at that moment"},
        **{name: {"type": "boolean", "default": default} for name, default in _FLAGS.items()},
    },
}
"""The JSON schema of the request, as the API documents it (:func:`parse_request` is what decides)."""


class InvalidRequest(BackupError):
    """The request is refused; ``problems`` names each thing wrong with it."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid restore request: " + "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class PathSpec:
    """Where a component comes from: ``latest``, a backup id, a local path or an ``s3://`` URL."""

    kind: str  # "latest", "id", "local" or "s3"
    value: str
    backup_type: BackupType | None = None  # named by a path, checked against the component
    backup_id: str | None = None


@dataclass(frozen=True)
class RestoreRequest:
    type: BackupType
    paths: dict[str, PathSpec]
    target_conn_id: str = RESTORE_DB_CONN_ID
    confirm_overwrite: bool = False
    dry_run: bool = False
    supabase_target: bool = False
    storage_target: str = "folder"
    restore_roles: bool = False
    no_owner: bool = True
    raw_paths: dict[str, str] = field(default_factory=dict)
    point_in_time: datetime | None = None
    accept_earlier_point: bool = False
    owner_map: dict[str, str] = field(default_factory=dict)
    target_project_conn_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["point_in_time"] = self.point_in_time.isoformat() if self.point_in_time else None
        data["type"] = self.type.value
        data["paths"] = dict(self.raw_paths)
        del data["raw_paths"]
        return data


def parse_path(value: str, *, backup_root: str, bucket: str) -> PathSpec:
    """Classify one path; refuse anything outside the local root or the S3 bucket."""
    if value == "latest":
        return PathSpec("latest", value)
    if is_backup_id(value):
        return PathSpec("id", value, backup_id=value)
    if "\x00" in value or any(ord(c) < 32 for c in value):
        raise BackupError("contains control characters")
    if len(value) > MAX_PATH:
        raise BackupError(f"is longer than {MAX_PATH} characters")
    if value.startswith("/"):
        root = posixpath.normpath(backup_root)
        if ".." in value.split("/"):
            raise BackupError("may not contain '..'")
        normal = posixpath.normpath(value)
        if not normal.startswith(root + "/"):
            raise BackupError(f"is outside the local backup root {root}")
        return _with_backup(PathSpec("local", value), normal[len(root) + 1 :])
    url = urlsplit(value)
    if url.scheme == "s3":
        if url.netloc != bucket:
            raise BackupError(f"names bucket {url.netloc!r}; only s3://{bucket} is a backup location")
        key = url.path.lstrip("/")
        if ".." in key.split("/"):
            raise BackupError("may not contain '..'")
        return _with_backup(PathSpec("s3", value), key)
    if url.scheme:
        raise BackupError(f"uses {url.scheme}://; only a local path, s3://{bucket}/..., a backup id or 'latest' are allowed")
    raise BackupError("is not 'latest', a backup id (e.g. 20261126T000000Z), an absolute local path or an s3:// URL")


def _with_backup(spec: PathSpec, relative: str) -> PathSpec:
    parts = [part for part in relative.split("/") if part]
    if len(parts) < 2:
        raise BackupError("does not name a backup folder (<type>/<backup_id>)")
    try:
        backup_type = BackupType(parts[0])
    except ValueError:
        raise BackupError(f"is not inside a backup type folder (found {parts[0]!r})") from None
    if not is_backup_id(parts[1]):
        raise BackupError(f"names {parts[1]!r}, which is not a backup id")
    return PathSpec(spec.kind, spec.value, backup_type, parts[1])


def _flag(body: dict, name: str, problems: list[str], default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        problems.append(f"{name} must be true or false, got {value!r}")
        return default
    return value


def parse_request(body: Any, *, backup_root: str, bucket: str) -> RestoreRequest:
    """Check a restore request's shape and paths; raise :class:`InvalidRequest` naming every problem."""
    if not isinstance(body, dict):
        raise InvalidRequest(["the request must be a JSON object"])
    problems: list[str] = []
    unknown = sorted(set(body) - KNOWN_FIELDS)
    if unknown:
        problems.append(f"unknown field(s): {', '.join(map(str, unknown))}")
    raw_type = body.get("type")
    backup_type = None
    if not isinstance(raw_type, str) or raw_type not in {t.value for t in COMPONENTS}:
        problems.append(f"type must be one of database, storage, config, full; got {raw_type!r}")
    else:
        backup_type = BackupType(raw_type)
    raw_paths = body.get("paths")
    paths: dict[str, PathSpec] = {}
    if not isinstance(raw_paths, dict):
        problems.append("paths must be an object such as {\"database\": \"latest\"}")
        raw_paths = {}
    if backup_type is not None:
        wanted = COMPONENTS[backup_type]
        extra = sorted(set(map(str, raw_paths)) - set(wanted))
        if extra:
            problems.append(f"paths.{extra[0]} is not part of a {backup_type.value} restore (expects {', '.join(wanted)})")
        for component in wanted:
            value = raw_paths.get(component)
            if value is None:
                problems.append(f"paths.{component} is missing for a {backup_type.value} restore")
                continue
            if not isinstance(value, str) or not value:
                problems.append(f"paths.{component} must be a non-empty string")
                continue
            try:
                spec = parse_path(value, backup_root=backup_root, bucket=bucket)
            except BackupError as error:
                problems.append(f"paths.{component} {error}")
                continue
            if spec.backup_type is not None and spec.backup_type.value != component:
                problems.append(f"paths.{component} points to a {spec.backup_type.value} backup, not a {component} backup")
                continue
            paths[component] = spec
    target = body.get("target_conn_id", RESTORE_DB_CONN_ID)
    if not isinstance(target, str) or not _CONN_ID.match(target):
        problems.append(f"target_conn_id must be a connection id, got {target!r}")
        target = RESTORE_DB_CONN_ID
    storage_target = body.get("storage_target", "folder")
    if not isinstance(storage_target, str) or not (
        storage_target == "folder" or storage_target.startswith("folder:/") or storage_target == "supabase"
        or (storage_target.startswith("supabase:") and _CONN_ID.match(storage_target[len("supabase:"):]))
    ):
        problems.append("storage_target must be 'folder', 'folder:/absolute/path', 'supabase' or 'supabase:<conn id>'")
        storage_target = "folder"
    flags = {name: _flag(body, name, problems, default) for name, default in _FLAGS.items()}
    point_in_time = _moment(body.get("point_in_time"), problems)
    owner_map = _owner_map(body.get("owner_map"), problems)
    project = body.get("target_project_conn_id")
    if project is not None and (not isinstance(project, str) or not _CONN_ID.match(project)):
        problems.append(f"target_project_conn_id must be a connection id, got {project!r}")
        project = None
    if project is not None and backup_type not in (None, BackupType.CONFIG, BackupType.FULL):
        problems.append("target_project_conn_id applies a config backup: only for type config or full")
    if problems or backup_type is None:
        raise InvalidRequest(problems)
    return RestoreRequest(
        type=backup_type,
        paths=paths,
        target_conn_id=target,
        storage_target=storage_target,
        raw_paths={k: v for k, v in raw_paths.items() if k in paths},
        point_in_time=point_in_time,
        owner_map=owner_map,
        target_project_conn_id=project,
        **flags,
    )


def _owner_map(value: Any, problems: list[str]) -> dict[str, str]:
    """``owner_map``: ``{"recorded owner": "role on the target"}``, role names only."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) and _ROLE.match(k)
                                              and _ROLE.match(v) for k, v in value.items()):
        problems.append("owner_map must map role names to role names, e.g. {\"bhv360_owner\": \"postgres\"}")
        return {}
    return dict(value)


def _moment(value: Any, problems: list[str]) -> datetime | None:
    """``point_in_time``: ISO 8601 with a zone (``2026-11-26T14:05:00+01:00``), or absent."""
    if value is None:
        return None
    if value == "":
        problems.append("point_in_time is empty: leave it out (or null) for the backup's own moment, "
                        "or give an ISO 8601 time with a zone")
        return None
    if not isinstance(value, str):
        problems.append(f"point_in_time must be an ISO 8601 time with a zone, got {value!r}")
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        problems.append(f"point_in_time {value[:60]!r} is not an ISO 8601 time (e.g. 2026-11-26T14:05:00+01:00)")
        return None
    if moment.tzinfo is None:
        problems.append(f"point_in_time {value[:60]!r} has no zone: add one (Z, +01:00) so the moment is unambiguous")
        return None
    if not _RFC3339.fullmatch(value):
        problems.append(f"point_in_time {value[:60]!r} is not in the API's date-time form (RFC 3339, e.g. "
                        "2026-11-26T14:05:00+01:00)")
        return None
    try:
        moment = moment.astimezone(timezone.utc)
    except OverflowError:
        problems.append(f"point_in_time {value[:60]!r} is outside the years a backup can have")
        return None
    if moment > datetime.now(timezone.utc) + timedelta(minutes=5):
        problems.append(f"point_in_time {value[:60]!r} is in the future")
        return None
    return moment
