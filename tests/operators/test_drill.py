"""The weekly restore drill end to end."""

from __future__ import annotations

import psycopg

from bhv360_backup.repository.catalog import list_backups, read_manifest
from bhv360_backup.repository.layout import BackupType, artifact_key
from tests.fixtures.airflow import run_dag


def drill_databases(target):
    with psycopg.connect(host=target.host, port=target.port, user="postgres", dbname="postgres") as connection:
        return connection.execute("SELECT datname FROM pg_database WHERE datname LIKE 'bhv360_drill_%'").fetchall()


def test_drill_restores_checks_and_cleans_up(backup_env, restore_db, database_backup, storage_api):
    storage_api.create_bucket("certificates")
    for i in range(80):
        storage_api.put("certificates", f"org-{i % 4}/cert {i}.pdf", f"%PDF {i}".encode(), "application/pdf")
    run_dag("bhv360_storage_backup")

    run, states = run_dag("bhv360_restore_drill")

    assert states == {"drill": "success"}
    line = next(e for e in backup_env.job_log() if e["type"] == "drill")
    assert line["status"] == "success" and line["objects"] == 50 and line["rows"] > 1000
    assert line["restore_seconds"] > 0
    assert drill_databases(backup_env.db) == []
    assert not (backup_env.root / "restore").exists() or not any((backup_env.root / "restore").rglob("*.pdf"))


def test_a_failing_drill_alerts(backup_env, restore_db, database_backup):
    key = artifact_key(BackupType.DATABASE, database_backup, "database.dump")
    for location in (backup_env.local, backup_env.cloud):
        location.put_bytes(key, b"not a dump")
    run, states = run_dag("bhv360_restore_drill")
    assert states == {"drill": "failed"}
    line = next(e for e in backup_env.job_log() if e["type"] == "drill")
    assert line["status"] == "failed" and "no intact copy" in line["error"]
    assert any("bhv360_restore_drill" in mail for mail in backup_env.smtp.bodies())
    assert drill_databases(backup_env.db) == []


def test_drill_decrypts_encrypted_backups_with_the_identity_connection(backup_env, encrypted, restore_db, storage_api):
    from bhv360_backup.demo.data import create_demo_database

    with psycopg.connect(host=backup_env.db.host, port=backup_env.db.port, user="postgres",
                         dbname=backup_env.db.dbname, autocommit=True) as connection:
        create_demo_database(connection, 1)
    storage_api.create_bucket("certificates")
    storage_api.put("certificates", "org-1/cert.pdf", b"%PDF cert", "application/pdf")
    run_dag("bhv360_database_backup")
    run_dag("bhv360_storage_backup")
    (backup_id,) = list_backups(backup_env.local, BackupType.DATABASE)
    assert read_manifest(backup_env.local, BackupType.DATABASE, backup_id).artifact("database.dump").encrypted

    run, states = run_dag("bhv360_restore_drill")

    assert states == {"drill": "success"}
    line = next(e for e in backup_env.job_log() if e["type"] == "drill")
    assert line["status"] == "success" and line["objects"] == 1 and line["rows"] > 100
    assert drill_databases(backup_env.db) == []


def test_the_drill_proves_grants_policies_and_row_visibility(backup_env, restore_db):
    from tests.fixtures import supabase_db

    supabase_db.make_bhv360_project(backup_env.db)
    run_dag("bhv360_database_backup")

    run, states = run_dag("bhv360_restore_drill")

    assert states == {"drill": "success"}
    line = next(e for e in backup_env.job_log() if e["type"] == "drill")
    assert line["access"]["checked"] and line["access"]["differences"] == []
    assert line["access"]["objects_compared"] > 20 and line["access"]["probes_compared"] > 10
    assert line["access"]["probe_differences"] == []
