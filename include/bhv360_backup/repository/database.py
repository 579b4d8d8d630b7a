"""The database backup format: ``database.dump`` (pg_dump's custom format compressed by pg_dump itself,
restorable with the seed's ``pg_restore -d CONN FILE``) or ``database.dump.zst`` (the uncompressed custom
format compressed with zstd in the worker: ``zstd -d`` then ``pg_restore``), ``roles.sql``, ``access-model.json`` (who may read what, and what each API
role sees), ``storage-objects.jsonl.gz`` (the names in ``storage.objects``, for the full set) and, with
encryption on, ``vault-secrets.json`` (Supabase Vault's secrets, decrypted: a new project has its own root
key, so the encrypted rows could not be read there)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from pyrage.x25519 import Identity

from bhv360_backup.locations.base import Location
from bhv360_backup.repository.compression import ZSTD, DumpCompression
from bhv360_backup.repository.manifest import Manifest
from bhv360_backup.repository.verify import read_checked_artifact, read_json_lines_artifact

DUMP_ARTIFACT = "database.dump"
ZSTD_DUMP_ARTIFACT = "database.dump.zst"
ROLES_ARTIFACT = "roles.sql"
STORAGE_OBJECTS_ARTIFACT = "storage-objects.jsonl.gz"
ACCESS_MODEL_ARTIFACT = "access-model.json"
VAULT_SECRETS_ARTIFACT = "vault-secrets.json"


def dump_path(compression: DumpCompression) -> str:
    """Where a backup made with ``compression`` keeps its dump."""
    return ZSTD_DUMP_ARTIFACT if compression.method == ZSTD else DUMP_ARTIFACT


def dump_artifact(manifest: Manifest) -> str:
    """The dump's path in a database backup, however it was compressed."""
    paths = {artifact.path for artifact in manifest.artifacts}
    return ZSTD_DUMP_ARTIFACT if ZSTD_DUMP_ARTIFACT in paths else DUMP_ARTIFACT


def read_storage_objects(location: Location, manifest: Manifest) -> set[tuple[str, str]] | None:
    """The ``storage.objects`` names a database backup recorded, or None if it recorded none."""
    if STORAGE_OBJECTS_ARTIFACT not in {a.path for a in manifest.artifacts}:
        return None
    return {tuple(row) for row in read_json_lines_artifact(location, manifest, STORAGE_OBJECTS_ARTIFACT)}


def read_vault_secrets(location: Location, manifest: Manifest, identities: Sequence[Identity] = ()) -> list[dict] | None:
    """Vault's secrets a database backup kept (name, description, secret), or None where it kept none."""
    if VAULT_SECRETS_ARTIFACT not in {a.path for a in manifest.artifacts}:
        return None
    return json.loads(read_checked_artifact(location, manifest, VAULT_SECRETS_ARTIFACT, identities))


def read_access_model(location: Location, manifest: Manifest, identities: Sequence[Identity] = ()) -> dict | None:
    """The access model a database backup recorded (since 0.3), or None for an older backup."""
    if ACCESS_MODEL_ARTIFACT not in {a.path for a in manifest.artifacts}:
        return None
    return json.loads(read_checked_artifact(location, manifest, ACCESS_MODEL_ARTIFACT, identities))
