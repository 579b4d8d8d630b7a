"""Read stored artifacts back and check them: size, sha256 and, for dumps, ``pg_restore --list``."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pyrage.x25519 import Identity

from bhv360_backup.errors import BackupError, ConfigurationError, IntegrityError
from bhv360_backup.locations.base import Location
from bhv360_backup.repository.compression import decompress
from bhv360_backup.repository.encryption import decrypt
from bhv360_backup.repository.layout import artifact_key
from bhv360_backup.repository.manifest import Artifact, Manifest
from bhv360_backup.settings import NEEDS_IDENTITY
from bhv360_backup.streams import Digest

ContentCheck = Callable[[Iterable[bytes]], None]
_END = object()


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


def require_identities(identities: Sequence[Identity], where: str) -> Sequence[Identity]:
    if not identities:
        raise ConfigurationError(f"{where} is encrypted: reading it needs {NEEDS_IDENTITY}")
    return identities


def plain_chunks(
    location: Location, key: str, artifact: Artifact, identities: Sequence[Identity] = ()
) -> Iterator[bytes]:
    """Stream a stored artifact's plain bytes, decrypting an encrypted one with ``identities`` and
    decompressing a compressed one.

    After the last chunk the stored bytes are checked against the manifest, and so are the
    plain ones; a mismatch raises :class:`IntegrityError` naming the copy.
    """
    where = f"{location.name}:{key}"
    stored = Digest()

    def hashed() -> Iterator[bytes]:
        for chunk in location.read_chunks(key):
            stored.update(chunk)
            yield chunk

    if not artifact.encrypted and not artifact.compressed:
        yield from hashed()
        artifact.check(stored.size, stored.sha256, where)
        return
    plain = Digest()
    chunks: Iterable[bytes] = hashed()
    if artifact.encrypted:
        chunks = decrypt(chunks, require_identities(identities, where), where)
    if artifact.compressed:
        chunks = decompress(chunks, where)
    for chunk in chunks:
        plain.update(chunk)
        yield chunk
    artifact.check(stored.size, stored.sha256, where)
    artifact.check_plain(plain.size, plain.sha256, where)


def check_while_streaming(chunks: Iterable[bytes], check: ContentCheck, digest: Digest | None = None) -> Iterator[bytes]:
    """Pass ``chunks`` through while ``check`` reads a copy of them in a thread (which also feeds
    ``digest``, off the streaming thread); raise its error at the end."""
    feed: queue.Queue = queue.Queue(maxsize=4)
    errors: list[BaseException] = []
    ended = threading.Event()

    def next_chunk() -> Any:
        chunk = feed.get()
        if digest is not None and chunk is not _END:
            digest.update(chunk)
        return chunk

    def fed() -> Iterator[bytes]:
        while (chunk := next_chunk()) is not _END:
            yield chunk
        ended.set()

    def run() -> None:
        try:
            check(fed())
        except BaseException as error:  # noqa: BLE001 - raised in the streaming thread
            errors.append(error)
        if not ended.is_set():
            while next_chunk() is not _END:
                pass

    thread = threading.Thread(target=run, name="content-check", daemon=True)
    thread.start()
    try:
        for chunk in chunks:
            feed.put(chunk)
            yield chunk
    finally:
        feed.put(_END)
        thread.join()
    if errors:
        raise errors[0]


def read_back(
    location: Location, key: str, artifact: Artifact, check: ContentCheck | None = None,
    identities: Sequence[Identity] = (),
) -> None:
    """Read one stored artifact once and raise on any mismatch. ``check`` sees the plain bytes; an
    encrypted artifact without ``identities`` is checked by its stored sha256 alone (its content
    was checked before it was encrypted)."""
    if artifact.encrypted and not identities:
        artifact, check = artifact.as_stored(), None
    chunks = plain_chunks(location, key, artifact, identities)
    if check is None:
        for _ in chunks:
            pass
    else:
        check(chunks)


def read_checked_artifact(
    location: Location, manifest: Manifest, path: str, identities: Sequence[Identity] = ()
) -> bytes:
    """A small artifact's plain bytes (an index, a list), after checking them against the manifest."""
    key = artifact_key(manifest.type, manifest.backup_id, path)
    return b"".join(plain_chunks(location, key, manifest.artifact(path), identities))


def read_json_lines_artifact(
    location: Location, manifest: Manifest, path: str, identities: Sequence[Identity] = ()
) -> Iterator[Any]:
    """The rows of a gzip-compressed JSON-lines artifact, as :func:`read_lines_artifact` reads its lines."""
    return map(json.loads, read_lines_artifact(location, manifest, path, identities))


def read_lines_artifact(
    location: Location, manifest: Manifest, path: str, identities: Sequence[Identity] = ()
) -> Iterator[str]:
    """The non-empty lines of a gzip-compressed artifact of UTF-8 lines, as stored, streamed in bounded
    memory; the artifact's size and sha256 are checked when the last line has been read (a damaged copy
    raises then)."""
    key = artifact_key(manifest.type, manifest.backup_id, path)
    decompressor = zlib.decompressobj(31)
    pending = b""
    for chunk in plain_chunks(location, key, manifest.artifact(path), identities):
        pending += decompressor.decompress(chunk)
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line:
                yield line.decode()
    pending += decompressor.flush()
    for line in pending.split(b"\n"):
        if line:
            yield line.decode()


@dataclass(frozen=True)
class Finding:
    location: str
    problem: str


def verify_backup(
    location: Location, manifest: Manifest, *, deep: bool, checks: dict[str, ContentCheck] | None = None,
    identities: Sequence[Identity] = (), vouched: bool = False,
) -> list[Finding]:
    """Check a published backup in one location: every artifact present with its size; with ``deep``,
    its sha256 (and, decrypted where ``identities`` allow, its content check) too. With ``vouched``
    an unencrypted artifact whose checksum the backend still keeps as recorded is not read (a restore
    reads it anyway, checking every byte before using it). Returns what is wrong, empty when all is well."""
    findings = []
    for artifact in manifest.artifacts:
        key = artifact_key(manifest.type, manifest.backup_id, artifact.path)
        try:
            if deep and vouched and artifact.s3_checksum and not artifact.encrypted \
                    and location.confirms(key, artifact.size, artifact.s3_checksum):
                continue
            if deep:
                read_back(location, key, artifact, (checks or {}).get(artifact.path), identities)
            else:
                size = location.size_of(key)
                if size is None:
                    raise IntegrityError(f"{location.name}:{key} is missing")
                if size != artifact.size:
                    raise IntegrityError(f"{location.name}:{key} is {size} bytes, manifest says {artifact.size}")
        except BackupError as error:
            findings.append(Finding(location.name, str(error)))
    return findings
