"""Where backups are kept: the local folder and the S3 bucket, behind one interface."""

from bhv360_backup.locations.base import (
    CHUNK_SIZE,
    ArtifactMissing,
    ArtifactWriter,
    BackupLocked,
    Location,
    StoredObject,
)
from bhv360_backup.locations.local import LocalLocation
from bhv360_backup.locations.s3 import ObjectLock, S3Location

__all__ = [
    "CHUNK_SIZE",
    "ArtifactMissing",
    "ArtifactWriter",
    "BackupLocked",
    "LocalLocation",
    "Location",
    "ObjectLock",
    "S3Location",
    "StoredObject",
]
