"""The database backup: a custom-format dump and the roles, from one consistent snapshot."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from bhv360_backup.postgres.access import schema_of
from bhv360_backup.postgres.client import (
    ChildProcessStream,
    PgTarget,
    find_client,
    libpq_environment,
    tool_major,
)
from bhv360_backup.repository.compression import DEFAULT_DUMP_COMPRESSION, DumpCompression
from bhv360_backup.repository.config import fingerprint
from bhv360_backup.repository.database import (
    ACCESS_MODEL_ARTIFACT,
    ROLES_ARTIFACT,
    STORAGE_OBJECTS_ARTIFACT,
    VAULT_SECRETS_ARTIFACT,
    dump_path,
)
from bhv360_backup.repository.manifest import Manifest
from bhv360_backup.repository.verify import pg_archive_check
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.sources.postgres import exported_snapshot, pg_dump_argv, pg_dumpall_roles_argv
from bhv360_backup.streams import gzip_json_lines


def access_summary(model: dict) -> dict:
    """What a restore must check before writing, readable without the key: the extensions the
    database used, the roles owning its objects (and the schemas they own them in), and the roles its
    grants and policies name."""
    owners: set[str] = set()
    owned_in: dict[str, set[str]] = {}
    grantees: set[str] = set()
    for key, entry in model["objects"].items():
        owner = entry.get("owner")
        owners.update(filter(None, [owner]))
        if owner:
            owned_in.setdefault(owner, set()).add(schema_of(key) or "")
        grantees.update(filter(None, [entry.get("role")]))
        for acl in [entry.get("acl", {}), *entry.get("columns", {}).values()]:
            grantees.update(role for role in acl if role != owner)
        for policy in entry.get("policies", {}).values():
            grantees.update(policy["roles"])
    return {"extensions": model["extensions"], "owners": sorted(owners),
            "owned_in": {owner: sorted(schemas) for owner, schemas in sorted(owned_in.items())},
            "owner_rights": model.get("owner_rights", {}),
            "roles": sorted(grantees - {"PUBLIC", "public"}),
            "objects": len(model["objects"]), "probes": len(model["probes"])}


def dump_database(
    target: PgTarget, writer: BackupWriter, *, pg_bin_dir: str, dag_id: str, run_id: str, slot: str | None = None,
    compression: DumpCompression = DEFAULT_DUMP_COMPRESSION,
) -> Manifest:
    """Dump ``target`` into every location of ``writer``, compressed as ``compression`` says; return the
    published manifest.

    The dump and the row counts in the manifest come from the same exported snapshot, so a
    restore can be checked against them exactly. A retry reuses a backup an earlier try
    finished. Whatever fails leaves no manifest and no partial artifact behind.
    """
    reused = writer.resume()
    if reused is not None:
        return reused
    try:
        with exported_snapshot(target, slot) as snapshot, libpq_environment(target) as env:
            pg_dump = find_client("pg_dump", snapshot.server_major, pg_bin_dir)
            pg_dumpall = find_client("pg_dumpall", snapshot.server_major, pg_bin_dir)
            pg_restore = find_client("pg_restore", snapshot.server_major, pg_bin_dir)
            with ThreadPoolExecutor(1, thread_name_prefix="table-stats") as counter:
                stats_future = counter.submit(snapshot.stats_and_access)
                dump = ChildProcessStream(pg_dump_argv(pg_dump, snapshot.snapshot_id, compression.pg_dump_level),
                                          env, "pg_dump")
                writer.add(dump_path(compression), dump, check=pg_archive_check(pg_restore),
                           zstd_level=compression.zstd_level)
                stats, model = stats_future.result()
                outside = snapshot.outside_change_stream() if (snapshot.chain or {}).get("exists") else None
            writer.add_bytes(ACCESS_MODEL_ARTIFACT, (json.dumps(model, sort_keys=True, indent=1) + "\n").encode())
            vault = snapshot.vault_secrets()
            if vault and writer.encrypted:
                writer.add(VAULT_SECRETS_ARTIFACT, [json.dumps(vault, sort_keys=True).encode()])
            if snapshot.has_storage_objects():
                writer.add(STORAGE_OBJECTS_ARTIFACT, gzip_json_lines(list(row) for row in snapshot.storage_object_names()))
            writer.add(
                ROLES_ARTIFACT,
                ChildProcessStream(pg_dumpall_roles_argv(pg_dumpall, target.dbname), env, "pg_dumpall --roles-only"),
            )
        writer.verify()
        return writer.publish(
            dag_id=dag_id,
            run_id=run_id,
            details={
                "source": {"host": target.host, "port": target.port, "dbname": target.dbname},
                "server_version": snapshot.server_version,
                "pg_dump_version": tool_major(pg_dump)[1],
                "dump_format": "custom",
                "compression": str(compression),
                "snapshot_time": snapshot.snapshot_time,
                "table_rows": {table: entry["rows"] for table, entry in stats.items()},
                "table_checksums": {table: entry["checksum"] for table, entry in stats.items() if "checksum" in entry},
                "access": access_summary(model),
                **({"chain": snapshot.chain} if snapshot.chain else {}),
                **({"outside_change_stream": outside} if outside else {}),
                **({"vault": {"secrets": {item["name"]: fingerprint(item["secret"]) for item in vault},
                              "kept": writer.encrypted}} if vault else {}),
            },
        )
    except BaseException:
        writer.discard()
        raise
