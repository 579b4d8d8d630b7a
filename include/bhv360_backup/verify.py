"""Read stored artifacts back and check them: size, sha256 and, for dumps, ``pg_restore --list``."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from bhv360_backup.errors import BackupError, IntegrityError
from bhv360_backup.layout import artifact_key
from bhv360_backup.locations.base import Location
from bhv360_backup.manifest import Artifact, Manifest
from bhv360_backup.streams import Digest

ContentCheck = Callable[[Iterable[bytes]], None]


def pg_archive_check(pg_restore: str) -> ContentCheck:
    """A check that pipes the stream into ``pg_restore --list`` and fails unless it reads a valid archive."""

    def check(chunks: Iterable[bytes]) -> None:
        process = subprocess.Popen(
            [pg_restore, "--list"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        listing: dict[str, bytes] = {}
        reader = threading.Thread(target=lambda: listing.update(out=process.stdout.read(), err=process.stderr.read()))
        reader.start()
        feeding = True
        try:
            for chunk in chunks:
                if feeding:
                    try:
                        process.stdin.write(chunk)
                    except BrokenPipeError:
                        feeding = False  # pg_restore --list stops once it has read the table of contents
        finally:
            try:
                process.stdin.close()
            except BrokenPipeError:
                pass
            code = process.wait()
            reader.join()
        if code != 0:
            raise IntegrityError(f"pg_restore --list rejects the archive: {listing['err'].decode(errors='replace').strip()}")
        if b"; Archive created at" not in listing["out"]:
            raise IntegrityError("pg_restore --list printed no table of contents")

    return check


def read_back(location: Location, key: str, artifact: Artifact, check: ContentCheck | None = None) -> None:
    """Stream one stored artifact once, hashing it and feeding ``check``; raise on any mismatch."""
    digest = Digest()

    def hashed() -> Iterable[bytes]:
        for chunk in location.read_chunks(key):
            digest.update(chunk)
            yield chunk

    if check is None:
        for _ in hashed():
            pass
    else:
        check(hashed())
    artifact.check(digest.size, digest.sha256, f"{location.name}:{key}")


def read_checked_artifact(location: Location, manifest: Manifest, path: str) -> bytes:
    """A small artifact's bytes (an index, a list), after checking its size and sha256."""
    key = artifact_key(manifest.type, manifest.backup_id, path)
    data = location.read_bytes(key)
    manifest.artifact(path).check(len(data), hashlib.sha256(data).hexdigest(), f"{location.name}:{key}")
    return data


def read_json_lines_artifact(location: Location, manifest: Manifest, path: str) -> Iterator[Any]:
    """The rows of a checked gzip-compressed JSON-lines artifact."""
    for line in gzip.decompress(read_checked_artifact(location, manifest, path)).splitlines():
        yield json.loads(line)


@dataclass(frozen=True)
class Finding:
    location: str
    problem: str


def verify_backup(
    location: Location, manifest: Manifest, *, deep: bool, checks: dict[str, ContentCheck] | None = None
) -> list[Finding]:
    """Check a published backup in one location: every artifact present with its size; with ``deep``,
    its sha256 (and content check) too. Returns what is wrong, empty when all is well."""
    findings = []
    for artifact in manifest.artifacts:
        key = artifact_key(manifest.type, manifest.backup_id, artifact.path)
        try:
            if deep:
                read_back(location, key, artifact, (checks or {}).get(artifact.path))
            else:
                size = location.size_of(key)
                if size is None:
                    raise IntegrityError(f"{location.name}:{key} is missing")
                if size != artifact.size:
                    raise IntegrityError(f"{location.name}:{key} is {size} bytes, manifest says {artifact.size}")
        except BackupError as error:
            findings.append(Finding(location.name, str(error)))
    return findings
