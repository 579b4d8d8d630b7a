"""Encryption at rest end to end: encrypted DAG runs, verification without the key, restores with it, rotation."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess

import psycopg
from pyrage import x25519

from bhv360_backup.demo.data import create_demo_database
from bhv360_backup.repository.blobs import verify_snapshot_blobs
from bhv360_backup.repository.catalog import list_backups, read_manifest
from bhv360_backup.repository.layout import BackupType, artifact_key
from bhv360_backup.repository.snapshots import BLOBS_ARTIFACT, INDEX_ARTIFACT, read_blob_rows
from bhv360_backup.restore.validate import database_stats
from tests.fixtures.airflow import run_dag
from tests.repository.test_encryption import age_cli

AGE_HEADER = b"age-encryption.org/v1\n"


def decrypt_with_age_tool(path, identity: x25519.Identity) -> bytes:
    """``age --decrypt`` with the key on stdin (a key file would leave the secret on disk)."""
    return subprocess.run([age_cli(), "--decrypt", "-i", "/dev/stdin", str(path)], input=f"{identity}\n".encode(),
                          capture_output=True, check=True).stdout


def use_identities(monkeypatch, *identities: x25519.Identity) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_BHV360_AGE_IDENTITY", json.dumps(
        {"conn_type": "generic", "password": "\n".join(str(identity) for identity in identities)}))


def test_encrypted_database_backup_is_verified_without_the_key_and_restored_with_it(
    backup_env, encrypted, restore_db
):
    with psycopg.connect(host=backup_env.db.host, port=backup_env.db.port, user="postgres",
                         dbname=backup_env.db.dbname, autocommit=True) as connection:
        create_demo_database(connection, 2)

    run, states = run_dag("bhv360_database_backup")

    assert states == {"dump": "success", "verify": "success", "retention": "success", "retention_incremental": "success"}
    (backup_id,) = list_backups(backup_env.local, BackupType.DATABASE)
    manifest = read_manifest(backup_env.local, BackupType.DATABASE, backup_id)
    assert {a.path for a in manifest.artifacts} == {"database.dump", "access-model.json", "roles.sql"}
    assert all(a.encryption == "age" and a.plain_size and a.plain_sha256 != a.sha256 for a in manifest.artifacts)
    dump = manifest.artifact("database.dump")
    stored = backup_env.local.path_of(artifact_key(BackupType.DATABASE, backup_id, "database.dump"))
    assert stored.read_bytes().startswith(AGE_HEADER) and b"PGDMP" not in stored.read_bytes()[:4096]
    assert backup_env.cloud.read_bytes(artifact_key(BackupType.DATABASE, backup_id, "database.dump")) == stored.read_bytes()
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == dump.sha256  # verifiable without the key
    plain = decrypt_with_age_tool(stored, encrypted)  # the standard tool, no code of ours
    assert plain.startswith(b"PGDMP") and hashlib.sha256(plain).hexdigest() == dump.plain_sha256

    run, states = run_dag("bhv360_restore", {"type": "database", "paths": {"database": "latest"}})

    assert states == {"validate": "success", "restore": "success"}
    assert database_stats(restore_db) == database_stats(backup_env.db)
    assert not list((backup_env.root / "restore").rglob("database.dump"))  # no decrypted copy left behind


def test_restore_without_the_identity_names_the_missing_connection(backup_env, encrypted, restore_db, monkeypatch):
    run_dag("bhv360_database_backup")
    monkeypatch.delenv("AIRFLOW_CONN_BHV360_AGE_IDENTITY")

    run, states = run_dag("bhv360_restore", {"type": "database", "paths": {"database": "latest"}})

    assert states["validate"] == "failed" and states["restore"] != "success"
    line = next(e for e in backup_env.job_log() if e["type"] == "restore-validation:database")
    assert "is encrypted: restoring it needs the age identity (Airflow connection bhv360_age_identity" in line["error"]
    assert database_stats(restore_db) == {}


def test_encrypted_snapshots_dedupe_restore_and_survive_a_key_rotation(backup_env, encrypted, storage_api, monkeypatch):
    storage_api.create_bucket("incidents")
    storage_api.put("incidents", "org-1/report jan.pdf", b"%PDF incident report " * 500, "application/pdf")
    storage_api.put("incidents", "org-1/photo.jpg", b"\xff\xd8 photo of the scene", "image/jpeg")

    first_run, states = run_dag("bhv360_storage_backup")
    assert states["sync"] == "success"
    second_run, states = run_dag("bhv360_storage_backup")
    assert states["sync"] == "success"

    first, second = list_backups(backup_env.local, BackupType.STORAGE)
    lines = [e for e in backup_env.job_log() if e["type"] == "storage" and e["status"] == "success"]
    assert [line["stats"]["downloaded"] for line in lines] == [2, 0]  # dedup works on encrypted blobs
    for location in (backup_env.local, backup_env.cloud):
        manifest = read_manifest(location, BackupType.STORAGE, second)
        assert manifest.artifact(INDEX_ARTIFACT).encrypted and not manifest.artifact(BLOBS_ARTIFACT).encrypted
        assert verify_snapshot_blobs(location, manifest) == []  # checked without the key
        names = gzip.decompress(location.read_bytes(artifact_key(BackupType.STORAGE, second, BLOBS_ARTIFACT)))
        assert b"report" not in names and b"org-1" not in names  # the key-free rows name nothing
        blobs = [item.key for item in location.iter_objects("blobs/")]
        assert len(blobs) == 2 and all(key.startswith("blobs/age-") for key in blobs)
        assert all(location.read_bytes(key).startswith(AGE_HEADER) for key in blobs)

    old_identity = encrypted
    new_identity = x25519.Identity.generate()
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_AGE_RECIPIENTS", str(new_identity.to_public()))
    run_dag("bhv360_storage_backup")
    third = list_backups(backup_env.local, BackupType.STORAGE)[-1]
    assert [e["stats"]["downloaded"] for e in backup_env.job_log() if e["type"] == "storage"][-1] == 2
    rows = list(read_blob_rows(backup_env.local, read_manifest(backup_env.local, BackupType.STORAGE, third)))
    assert {row["space"] for row in rows} != {row["space"] for row in read_blob_rows(
        backup_env.local, read_manifest(backup_env.local, BackupType.STORAGE, first))}

    use_identities(monkeypatch, new_identity)
    run, states = run_dag("bhv360_restore", {"type": "storage", "paths": {"storage": first}})
    assert states["validate"] == "failed"  # the old snapshot needs the old key
    line = [e for e in backup_env.job_log() if e["type"] == "restore-validation:storage"][-1]
    assert "No matching keys" in line["error"]

    use_identities(monkeypatch, new_identity, old_identity)
    for backup_id in (first, third):
        run, states = run_dag("bhv360_restore", {"type": "storage", "paths": {"storage": backup_id}})
        assert states["restore"] == "success"
        restored = backup_env.root / "restore" / run.run_id.replace(":", "_").replace("+", "_") / "storage"
        assert (restored / "incidents" / "org-1" / "report jan.pdf").read_bytes() == b"%PDF incident report " * 500
        assert (restored / "incidents" / "org-1" / "photo.jpg").read_bytes() == b"\xff\xd8 photo of the scene"


def test_encrypted_full_set_restores_database_storage_and_config(backup_env, encrypted, restore_db, monkeypatch,
                                                                  tmp_path):
    with psycopg.connect(host=backup_env.db.host, port=backup_env.db.port, user="postgres",
                         dbname=backup_env.db.dbname, autocommit=True) as connection:
        create_demo_database(connection, 1)
    (tmp_path / "buckets" / "certificates").mkdir(parents=True)
    (tmp_path / "buckets" / "certificates" / "a.pdf").write_bytes(b"%PDF a")
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_STORAGE_SOURCE", f"folder:{tmp_path / 'buckets'}")
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_CONFIG_TABLES", "public.app_settings")

    run, states = run_dag("bhv360_full_backup")

    assert set(states.values()) == {"success"}
    (full_id,) = list_backups(backup_env.local, BackupType.FULL)
    full = read_manifest(backup_env.cloud, BackupType.FULL, full_id)
    assert full.details["consistency"]["storage_objects"] == {
        "checked": False, "reason": "the object names are encrypted and the backup worker holds no key"}
    config = read_manifest(backup_env.cloud, BackupType.CONFIG, full_id).artifact("config.json")
    assert config.encrypted
    assert b"app_settings" not in backup_env.cloud.read_bytes(artifact_key(BackupType.CONFIG, full_id, "config.json"))

    run, states = run_dag("bhv360_restore", {"type": "full", "paths": {"database": "latest", "storage": "latest",
                                                                       "config": "latest"}})

    assert states == {"validate": "success", "restore": "success"}
    assert database_stats(restore_db) == database_stats(backup_env.db)
    restored = backup_env.root / "restore" / run.run_id.replace(":", "_").replace("+", "_") / "storage"
    assert (restored / "certificates" / "a.pdf").read_bytes() == b"%PDF a"
    report = next(e for e in backup_env.job_log() if e["type"] == "restore:full")["report"]
    assert report["config"]["backup_id"] == full_id


def test_zstd_then_age_decrypts_and_decompresses_with_the_stock_tools_and_restores(
    backup_env, encrypted, restore_db, monkeypatch
):
    with psycopg.connect(host=backup_env.db.host, port=backup_env.db.port, user="postgres",
                         dbname=backup_env.db.dbname, autocommit=True) as connection:
        create_demo_database(connection, 2)
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_DUMP_COMPRESSION", "zstd:3")

    run, states = run_dag("bhv360_database_backup")

    assert states["dump"] == "success" and states["verify"] == "success"
    (backup_id,) = list_backups(backup_env.local, BackupType.DATABASE)
    dump = read_manifest(backup_env.local, BackupType.DATABASE, backup_id).artifact("database.dump.zst")
    assert (dump.encryption, dump.compression) == ("age", "zstd")
    stored = backup_env.local.path_of(artifact_key(BackupType.DATABASE, backup_id, "database.dump.zst"))
    compressed = decrypt_with_age_tool(stored, encrypted)
    plain = subprocess.run(["zstd", "-q", "-d", "-c"], input=compressed, capture_output=True, check=True).stdout
    assert plain.startswith(b"PGDMP") and hashlib.sha256(plain).hexdigest() == dump.plain_sha256

    run, states = run_dag("bhv360_restore", {"type": "database", "paths": {"database": "latest"}})

    assert states == {"validate": "success", "restore": "success"}
    assert database_stats(restore_db) == database_stats(backup_env.db)
