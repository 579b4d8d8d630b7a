"""The manifest: what a backup holds, written last, checked before anything uses the backup."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from bhv360_backup.errors import BackupError, IntegrityError
from bhv360_backup.paths import check_relative_path
from bhv360_backup.repository.compression import ZSTD
from bhv360_backup.repository.encryption import AGE
from bhv360_backup.repository.layout import BackupType, is_backup_id

MANIFEST_FORMAT = 1
_REQUIRED = ("format", "backup_id", "type", "started_at", "completed_at", "dag_id", "run_id", "artifacts")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time without zone: {value!r}")
    return moment.astimezone(timezone.utc)


@dataclass(frozen=True)
class Artifact:
    """One stored file of a backup, ``path`` relative to the backup's folder.

    ``size`` and ``sha256`` are of the stored bytes, so every copy can be verified without a key;
    ``s3_checksum`` is the SHA-256 checksum S3 keeps for them (of the whole, or of the parts' checksums
    and ``-N``), with which an S3 copy is checked without a download.
    An encrypted artifact (``encryption="age"``) or one compressed in the worker (``compression="zstd"``,
    encrypted after compressing) also records its plain bytes, checked on restore.
    """

    path: str
    size: int
    sha256: str
    encryption: str | None = None
    plain_size: int | None = None
    plain_sha256: str | None = None
    compression: str | None = None
    s3_checksum: str | None = None

    @property
    def encrypted(self) -> bool:
        return self.encryption is not None

    @property
    def compressed(self) -> bool:
        return self.compression is not None

    def as_stored(self) -> Artifact:
        """This artifact as bytes to check by size and sha256 alone, neither decrypted nor decompressed."""
        return replace(self, encryption=None, compression=None)

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    def check_plain(self, size: int, sha256: str, where: str) -> None:
        """Raise :class:`IntegrityError` if the decrypted bytes differ from what was encrypted."""
        if (size, sha256) != (self.plain_size, self.plain_sha256):
            raise IntegrityError(
                f"{where}: {self.path} {'decrypts' if self.encrypted else 'decompresses'} to {size} bytes with "
                f"sha256 {sha256}, "
                f"manifest says {self.plain_size} bytes with {self.plain_sha256}"
            )

    def check(self, size: int, sha256: str, where: str) -> None:
        """Raise :class:`IntegrityError` naming ``where`` if size or sha256 differ."""
        if size != self.size:
            raise IntegrityError(f"{where}: {self.path} is {size} bytes, manifest says {self.size}")
        if sha256 != self.sha256:
            raise IntegrityError(f"{where}: {self.path} sha256 {sha256} differs from manifest {self.sha256}")


@dataclass(frozen=True)
class Manifest:
    backup_id: str
    type: BackupType
    started_at: datetime
    completed_at: datetime
    dag_id: str
    run_id: str
    artifacts: tuple[Artifact, ...]
    details: dict[str, Any] = field(default_factory=dict)
    format: int = MANIFEST_FORMAT

    @property
    def data_time(self) -> datetime:
        """When the backup's data was taken: the database snapshot, the storage listing's start, else completion."""
        moment = (self.details.get("chain") or {}).get("snapshot_at") or self.details.get("snapshot_time") \
            or self.details.get("listing_started_at")
        return parse_iso(moment) if moment else self.completed_at

    @property
    def size(self) -> int:
        return sum(a.size for a in self.artifacts)

    def artifact(self, path: str) -> Artifact:
        for candidate in self.artifacts:
            if candidate.path == path:
                return candidate
        raise BackupError(f"{self.type.value} backup {self.backup_id} has no artifact {path!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "backup_id": self.backup_id,
            "type": self.type.value,
            "started_at": iso(self.started_at),
            "completed_at": iso(self.completed_at),
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "artifacts": [a.to_dict() for a in self.artifacts],
            "details": self.details,
        }

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode()

    @property
    def sha256(self) -> str:
        """The sha256 of the serialised manifest, as a full set records its components."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Manifest:
        """Parse and check a stored manifest; ``where`` names it in every error."""
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise IntegrityError(f"{where}: manifest is not valid JSON ({error})") from None
        if not isinstance(raw, dict):
            raise IntegrityError(f"{where}: manifest is not a JSON object")
        missing = [key for key in _REQUIRED if key not in raw]
        if missing:
            raise IntegrityError(f"{where}: manifest lacks {', '.join(missing)}")
        if raw["format"] != MANIFEST_FORMAT:
            raise IntegrityError(f"{where}: manifest format {raw['format']!r} is not supported")
        try:
            artifacts = tuple(_artifact(a) for a in raw["artifacts"])
            manifest = cls(
                backup_id=str(raw["backup_id"]),
                type=BackupType(raw["type"]),
                started_at=parse_iso(raw["started_at"]),
                completed_at=parse_iso(raw["completed_at"]),
                dag_id=str(raw["dag_id"]),
                run_id=str(raw["run_id"]),
                artifacts=artifacts,
                details=dict(raw.get("details") or {}),
            )
        except (KeyError, TypeError, ValueError, BackupError) as error:
            raise IntegrityError(f"{where}: manifest is malformed ({error})") from None
        if not is_backup_id(manifest.backup_id):
            raise IntegrityError(f"{where}: manifest names an invalid backup id {manifest.backup_id!r}")
        return manifest


def _artifact(raw: dict[str, Any]) -> Artifact:
    artifact = Artifact(check_relative_path(raw["path"]), int(raw["size"]), str(raw["sha256"]),
                        s3_checksum=str(raw["s3_checksum"]) if raw.get("s3_checksum") else None)
    if "encryption" not in raw and "compression" not in raw:
        return artifact
    if raw.get("encryption", AGE) != AGE:
        raise ValueError(f"{artifact.path}: unknown encryption {raw['encryption']!r}")
    if raw.get("compression", ZSTD) != ZSTD:
        raise ValueError(f"{artifact.path}: unknown compression {raw['compression']!r}")
    return replace(artifact, encryption=raw.get("encryption"), compression=raw.get("compression"),
                   plain_size=int(raw["plain_size"]), plain_sha256=str(raw["plain_sha256"]))
