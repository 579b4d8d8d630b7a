"""Write one backup into every location at once: artifacts, read-back verification, manifest last."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pyrage.x25519 import Recipient

from bhv360_backup.errors import BackupError, first_line
from bhv360_backup.locations.base import ArtifactWriter, Location
from bhv360_backup.repository import compression, encryption
from bhv360_backup.repository.catalog import delete_backup, has_manifest, read_manifest, write_manifest
from bhv360_backup.repository.compression import ZSTD
from bhv360_backup.repository.encryption import AGE
from bhv360_backup.repository.layout import BackupType, artifact_key
from bhv360_backup.repository.manifest import Artifact, Manifest, utc_now
from bhv360_backup.repository.verify import ContentCheck, check_while_streaming, read_back
from bhv360_backup.streams import CopyResult, Digest, ProgressLog, copy_stream

log = logging.getLogger(__name__)


@dataclass
class BackupWriter:
    """Collects one backup's artifacts in every location; a location that fails drops out.

    Nothing is listed anywhere until :meth:`publish` writes the manifest, and only to the
    locations that took and verified every artifact.
    """

    locations: Sequence[Location]
    backup_type: BackupType
    backup_id: str
    recipients: Sequence[Recipient] = ()
    started_at: datetime = field(default_factory=utc_now)
    artifacts: list[Artifact] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    receipts: dict[tuple[str, str], str] = field(default_factory=dict)  # (location, key) -> the backend's receipt
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def live(self) -> list[Location]:
        return [location for location in self.locations if location.name not in self.failures]

    def drop(self, location: Location, reason: str) -> None:
        """Record that ``location`` lost this backup; the first reason wins. Safe from several threads."""
        with self._lock:
            if location.name in self.failures:
                return
            log.error("%s location %s dropped out: %s", self.backup_type.value, location.describe(), reason)
            self.failures[location.name] = reason

    def write_everywhere(
        self, key: str, chunks: Iterable[bytes], what: str, *, durable: bool = True,
        progress: ProgressLog | None = None,
    ) -> tuple[CopyResult, list[Location]]:
        """Stream ``chunks`` to ``key`` in every live location at once; a location that fails drops out.

        Returns the copy's size and sha256, and the locations that now hold the object.
        """
        opened: dict[str, ArtifactWriter] = {}

        def open_writer(location: Location) -> ArtifactWriter:
            opened[location.name] = location.open_writer(key, durable=durable)
            return opened[location.name]

        result, written = self.stream_everywhere(open_writer, chunks, what, progress=progress)
        for location in written:
            if receipt := opened[location.name].receipt():
                self.receipts[(location.name, key)] = receipt
        return result, written

    def stream_everywhere(
        self, open_writer: Callable[[Location], ArtifactWriter], chunks: Iterable[bytes], what: str, *,
        progress: ProgressLog | None = None, digest: Digest | None = None,
    ) -> tuple[CopyResult, list[Location]]:
        """:meth:`write_everywhere` with the writers ``open_writer`` opens; ``digest`` counts the bytes."""
        writers = {}
        for location in self.live:
            try:
                writers[location.name] = open_writer(location)
            except Exception as error:  # noqa: BLE001 - recorded; the other locations go on
                self.drop(location, f"cannot write {what}: {first_line(error)}")
        self._require_live()
        result = copy_stream(chunks, writers, progress, digest)
        written = []
        for location in self.locations:
            if location.name in result.failed:
                self.drop(location, f"writing {what}: {first_line(result.failed[location.name])}")
            elif location.name in writers:
                written.append(location)
        return result, written

    def flush(self) -> None:
        """What each live location holds made durable (blobs, before an index names them); a location
        that cannot drops out. Safe from several threads."""
        for location in self.live:
            try:
                location.flush()
            except Exception as error:  # noqa: BLE001 - recorded; the other locations go on
                self.drop(location, f"making the blobs durable: {first_line(error)}")

    @property
    def encrypted(self) -> bool:
        return bool(self.recipients)

    def seal(self, chunks: Iterable[bytes], check: ContentCheck | None = None, *, encrypt: bool = True,
             zstd_level: int | None = None) -> tuple[Iterable[bytes], Digest]:
        """The bytes to store for the plain ``chunks``: zstd-compressed at ``zstd_level`` if given, then
        age-encrypted if ``encrypt`` and the writer has recipients; ``check`` runs on the plain bytes on
        the way (the stored ones are not what it reads). The digest counts the plain bytes as they pass."""
        plain = Digest()

        def counted() -> Iterator[bytes]:
            for chunk in chunks:
                plain.update(chunk)
                yield chunk

        # with a check, its thread hashes the plain bytes: a second core for a large dump's sha256
        stored: Iterable[bytes] = counted() if check is None else check_while_streaming(chunks, check, plain)
        if zstd_level is not None:
            stored = compression.compress(stored, zstd_level)
        if encrypt and self.encrypted:
            stored = encryption.encrypt(stored, self.recipients)
        return stored, plain

    def add(
        self, path: str, chunks: Iterable[bytes], check: ContentCheck | None = None, *, encrypt: bool = True,
        zstd_level: int | None = None,
    ) -> Artifact:
        """Stream ``chunks`` into ``path`` of this backup in every live location, zstd-compressed at
        ``zstd_level`` if given and encrypted when the writer has recipients (``encrypt=False`` for an
        artifact that names nothing and holds no content). ``check`` reads the plain bytes on the way
        in, before they leave the worker; a failed check fails the artifact everywhere."""
        key = artifact_key(self.backup_type, self.backup_id, path)
        progress = ProgressLog(f"{self.backup_type.value} {path}")
        encrypted = self.encrypted and encrypt
        if encrypted or zstd_level is not None:
            stored, plain = self.seal(chunks, check, encrypt=encrypt, zstd_level=zstd_level)
            result, _ = self.write_everywhere(key, stored, path, progress=progress)
            artifact = Artifact(path, result.size, result.sha256, AGE if encrypted else None, plain.size,
                                plain.sha256, ZSTD if zstd_level is not None else None)
        else:
            checked = chunks if check is None else check_while_streaming(chunks, check)
            result, _ = self.write_everywhere(key, checked, path, progress=progress)
            artifact = Artifact(path, result.size, result.sha256)
        receipts = {receipt for (_, stored_key), receipt in self.receipts.items() if stored_key == key}
        if len(receipts) == 1:
            artifact = replace(artifact, s3_checksum=receipts.pop())
        self._require_live()
        self.artifacts.append(artifact)
        return artifact

    def add_bytes(self, path: str, data: bytes) -> Artifact:
        return self.add(path, [data])

    def verify(self) -> None:
        """Check every artifact in every live location (the locations in parallel): by the backend's
        own checksum where it keeps one for what was uploaded (S3), else by reading it back and
        comparing size and sha256 of the stored bytes (the plain ones were checked on the way in);
        a location whose copy differs drops out."""

        def verify_location(location: Location) -> str | None:
            for artifact in self.artifacts:
                key = artifact_key(self.backup_type, self.backup_id, artifact.path)
                try:
                    receipt = self.receipts.get((location.name, key))
                    if receipt and location.confirms(key, artifact.size, receipt):
                        continue
                    read_back(location, key, artifact.as_stored())
                except Exception as error:  # noqa: BLE001 - recorded; the other locations go on
                    return f"verification of {artifact.path}: {first_line(error)}"
            return None

        live = self.live
        with ThreadPoolExecutor(max(1, len(live)), thread_name_prefix="verify") as pool:
            outcomes = list(pool.map(verify_location, live))
        for location, problem in zip(live, outcomes, strict=True):
            if problem:
                self.drop(location, problem)
        self._require_live()

    def publish(self, *, dag_id: str, run_id: str, details: dict[str, Any]) -> Manifest:
        """Write the manifest, last, to every location that holds the whole verified backup."""
        manifest = Manifest(
            backup_id=self.backup_id,
            type=self.backup_type,
            started_at=self.started_at,
            completed_at=utc_now(),
            dag_id=dag_id,
            run_id=run_id,
            artifacts=tuple(self.artifacts),
            details=details,
        )
        for location in self.live:
            try:
                write_manifest(location, manifest)
            except Exception as error:  # noqa: BLE001 - recorded; the other locations go on
                self.drop(location, f"writing the manifest: {first_line(error)}")
        self._require_live()
        return manifest

    def resume(self, copy_extra: Callable[[Manifest, Location, Location], None] | None = None) -> Manifest | None:
        """Make a retried run safe: reuse a backup an earlier try completed, or clear its leftovers.

        If any location holds the complete backup, it is copied to the live locations that lack
        it and its manifest is returned. Otherwise every location's leftovers of this id are
        removed and None is returned: the caller makes the backup afresh. A location that
        cannot be reached drops out. ``copy_extra`` copies what a backup shares outside its
        folder (a snapshot's blobs) before the backup itself is copied.
        """
        complete = []
        for location in self.live:
            try:
                if has_manifest(location, self.backup_type, self.backup_id):
                    complete.append(location)
                else:
                    delete_backup(location, self.backup_type, self.backup_id)
            except Exception as error:  # noqa: BLE001 - recorded; the other locations go on
                self.drop(location, f"unreachable: {first_line(error)}")
        self._require_live()
        if not complete:
            return None
        source = complete[0]
        manifest = read_manifest(source, self.backup_type, self.backup_id)
        for location in self.live:
            if location not in complete:
                log.info("copying %s %s from %s to %s", self.backup_type.value, self.backup_id, source.name, location.name)
                try:
                    if copy_extra is not None:
                        copy_extra(manifest, source, location)
                    copy_backup(manifest, source, location)
                except Exception as error:  # noqa: BLE001 - recorded; the other locations go on
                    self.drop(location, f"copying the earlier try's backup: {first_line(error)}")
        return manifest

    def raise_for_failures(self) -> None:
        """Fail when any location is missing the backup, saying where it did land."""
        if self.failures:
            missing = "; ".join(f"{name}: {reason}" for name, reason in self.failures.items())
            landed = ", ".join(location.describe() for location in self.live) or "nowhere"
            raise BackupError(
                f"{self.backup_type.value} backup {self.backup_id} is complete only in {landed}; missing in {missing}"
            )

    def discard(self) -> None:
        """Remove whatever this backup left in any location (it has no manifest there)."""
        for location in self.locations:
            try:
                delete_backup(location, self.backup_type, self.backup_id)
            except Exception as error:  # noqa: BLE001 - leftovers are retention's to clean
                log.warning("could not remove leftovers of %s from %s: %s", self.backup_id, location.name, error)

    def _require_live(self) -> None:
        if not self.live:
            reasons = "; ".join(f"{name}: {reason}" for name, reason in self.failures.items())
            raise BackupError(f"{self.backup_type.value} backup {self.backup_id} failed in every location: {reasons}")


def copy_backup(manifest: Manifest, source: Location, target: Location) -> None:
    """Copy a published backup from one location to another, checking every byte, manifest last."""
    for artifact in manifest.artifacts:
        key = artifact_key(manifest.type, manifest.backup_id, artifact.path)
        result = copy_stream(source.read_chunks(key), {target.name: target.open_writer(key)})
        if target.name in result.failed:
            raise BackupError(f"copying {key} to {target.describe()}: {first_line(result.failed[target.name])}")
        artifact.check(result.size, result.sha256, f"{source.name}:{key}")
    write_manifest(target, manifest)
