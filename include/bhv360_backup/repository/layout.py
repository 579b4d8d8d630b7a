"""Backup ids and the relative paths of a location's layout (the same locally and in S3)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from enum import Enum

from pyrage.x25519 import Recipient

from bhv360_backup.errors import BackupError
from bhv360_backup.paths import check_relative_path

MANIFEST_NAME = "manifest.json"
BLOBS_ROOT = "blobs/"
PLAIN_SPACE = "sha256"
BLOB_PREFIX = f"{BLOBS_ROOT}{PLAIN_SPACE}/"
ID_PATTERN = re.compile(r"^(\d{8}T\d{6}Z)(-[a-z0-9]{1,32})?$")
_ID_TIME_FORMAT = "%Y%m%dT%H%M%SZ"


class BackupType(str, Enum):
    """The kinds of backup the seed names; the value is the layout's top-level folder."""

    DATABASE = "database"
    CONFIG = "config"
    STORAGE = "storage"
    FULL = "full"
    INCREMENTAL = "incremental"  # a segment of the database's change stream (and the files it names)

    @classmethod
    def parse(cls, value: str) -> BackupType:
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(t.value for t in cls)
            raise BackupError(f"unknown backup type {value!r}: expected one of {names}") from None


def backup_id_for_run(run_after: datetime, run_id: str, *, scheduled: bool) -> str:
    """The id of the backup a DAG run makes: the same for every try of that run.

    A scheduled run's id is the UTC time it was due; any other run gets a suffix derived
    from its run id, so manual re-runs stay apart while still sorting in time order.
    """
    stamp = run_after.astimezone(timezone.utc).strftime(_ID_TIME_FORMAT)
    if scheduled:
        return stamp
    return f"{stamp}-m{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"


def is_backup_id(value: str) -> bool:
    return bool(ID_PATTERN.match(value))


def backup_dir(backup_type: BackupType, backup_id: str) -> str:
    if not is_backup_id(backup_id):
        raise BackupError(f"not a backup id: {backup_id!r}")
    return f"{backup_type.value}/{backup_id}"


def artifact_key(backup_type: BackupType, backup_id: str, artifact_path: str) -> str:
    """The location-relative path of one artifact of a backup."""
    return f"{backup_dir(backup_type, backup_id)}/{check_relative_path(artifact_path)}"


def manifest_key(backup_type: BackupType, backup_id: str) -> str:
    return f"{backup_dir(backup_type, backup_id)}/{MANIFEST_NAME}"


def blob_key(sha256: str, space: str | None = None) -> str:
    return f"{BLOBS_ROOT}{space or PLAIN_SPACE}/{sha256[:2]}/{sha256}"


def blob_space(recipients: Sequence[Recipient]) -> str | None:
    """The blob space of blobs encrypted to ``recipients``; None (plain blobs) without recipients."""
    if not recipients:
        return None
    return "age-" + hashlib.sha256("\n".join(sorted(map(str, recipients))).encode()).hexdigest()[:16]
