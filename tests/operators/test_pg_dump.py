"""The daily database backup end to end, through Airflow, against real PostgreSQL, S3, SMTP and webhook."""

from __future__ import annotations

import json
import stat
import subprocess

import psycopg
import pytest

from bhv360_backup.demo.data import create_demo_database
from bhv360_backup.repository.catalog import delete_backup, list_backups, read_manifest, scan_backups
from bhv360_backup.repository.layout import BackupType, artifact_key
from bhv360_backup.restore.validate import database_stats
from tests.conftest import DB_PASSWORD, TASK_LOGS
from tests.fixtures import postgres
from tests.fixtures.airflow import run_dag, xcom_values

DAG_ID = "bhv360_database_backup"


def fill(target, organisations=3):
    with psycopg.connect(host=target.host, port=target.port, user=target.user, dbname=target.dbname,
                         autocommit=True) as connection:
        create_demo_database(connection, organisations)


def pg_tool_spy(folder, log, *, truncate_after: int | None = None):
    """Wrappers for pg_dump/pg_dumpall/pg_restore that record argv and password env, then run the real tool."""
    folder.mkdir()
    real = "/usr/lib/postgresql/15/bin"
    for tool in ("pg_dump", "pg_dumpall", "pg_restore"):
        run = f'{real}/{tool} "$@"'
        if tool == "pg_dump" and truncate_after:
            # the real dump, cut off mid-stream, as when the process is killed
            run = f'if [ "$1" = --version ]; then {run}; exit; fi; {run} | head -c {truncate_after}; kill -9 $$'
        script = folder / tool
        script.write_text(
            "#!/bin/sh\n"
            f'echo "{tool} $* PGPASSWORD=${{PGPASSWORD:-unset}} PGPASSFILE=${{PGPASSFILE:+set}}" >> {log}\n'
            f"{run}\n"
        )
        script.chmod(0o755)
    return folder


def test_backup_lands_in_both_locations_and_restores_equal(backup_env, tmp_path, monkeypatch):
    fill(backup_env.db)
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_PG_DUMP_BIN_DIR", str(pg_tool_spy(tmp_path / "bin", tmp_path / "argv.log")))

    run, states = run_dag(DAG_ID)

    assert states == {"dump": "success", "verify": "success", "retention": "success", "retention_incremental": "success"}
    (backup_id,) = list_backups(backup_env.local, BackupType.DATABASE)
    assert list_backups(backup_env.cloud, BackupType.DATABASE) == [backup_id]
    manifest = read_manifest(backup_env.local, BackupType.DATABASE, backup_id)
    assert manifest.to_bytes() == read_manifest(backup_env.cloud, BackupType.DATABASE, backup_id).to_bytes()
    assert [a.path for a in manifest.artifacts] == ["database.dump", "access-model.json", "roles.sql"]
    assert manifest.details["table_rows"]["public.staff"] == 3 * 250
    dump = backup_env.local.path_of(artifact_key(BackupType.DATABASE, backup_id, "database.dump"))
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    assert stat.S_IMODE(dump.parent.stat().st_mode) == 0o700

    restored = postgres.create_database(backup_env.db.with_dbname("postgres"), "bhv360_restored")
    try:
        subprocess.run(["pg_restore", "--no-owner", "-h", restored.host, "-p", str(restored.port), "-U", "postgres",
                        "-d", restored.dbname, str(dump)], check=True, capture_output=True)
        source = database_stats(backup_env.db)
        assert database_stats(restored) == source
        assert {table: entry["rows"] for table, entry in source.items()} == manifest.details["table_rows"]
        assert manifest.details["table_checksums"]["public.app_settings"] == source["public.app_settings"]["checksum"]
    finally:
        postgres.drop_database(restored)

    (line,) = [entry for entry in backup_env.job_log() if entry["type"] == "database"]
    assert line["status"] == "success" and line["backup_id"] == backup_id
    assert line["bytes"] == manifest.size and line["locations"] == ["local", "s3"]

    argv_log = (tmp_path / "argv.log").read_text()
    assert "pg_dump --format=custom" in argv_log and "pg_restore --list" in argv_log
    assert "PGPASSWORD=unset PGPASSFILE=set" in argv_log
    task_log = "\n".join(TASK_LOGS.lines)
    assert f"database backup {backup_id}" in task_log  # the task log is what is searched
    seen = argv_log + task_log + json.dumps(xcom_values(DAG_ID, run.run_id))
    seen += (backup_env.log_dir / "jobs.jsonl").read_text() + manifest.to_bytes().decode()
    assert DB_PASSWORD not in seen


def test_retry_reuses_the_finished_backup(backup_env):
    fill(backup_env.db, 1)
    from tests.fixtures.airflow import dag_bag

    dag = dag_bag().dags[DAG_ID]
    run, states = run_dag(DAG_ID)
    (backup_id,) = list_backups(backup_env.local, BackupType.DATABASE)
    first = read_manifest(backup_env.local, BackupType.DATABASE, backup_id)
    delete_backup(backup_env.cloud, BackupType.DATABASE, backup_id)  # as if the S3 copy had failed

    # what a Clear of the dump task runs: the same run's backup id
    from bhv360_backup.producers.database import dump_database
    from bhv360_backup.repository.writer import BackupWriter

    writer = BackupWriter([backup_env.local, backup_env.cloud], BackupType.DATABASE, backup_id)
    again = dump_database(backup_env.db, writer, pg_bin_dir="", dag_id=dag.dag_id, run_id=run.run_id)

    assert again.to_bytes() == first.to_bytes()
    assert read_manifest(backup_env.cloud, BackupType.DATABASE, backup_id).to_bytes() == first.to_bytes()
    assert list_backups(backup_env.local, BackupType.DATABASE) == [backup_id]


@pytest.mark.parametrize("failure", ["connection_refused", "killed_mid_stream"])
def test_failed_dump_leaves_nothing_and_alerts(backup_env, tmp_path, monkeypatch, failure):
    fill(backup_env.db, 2)
    if failure == "connection_refused":
        refused = json.loads(json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": postgres.free_port(),
                                         "login": "postgres", "schema": backup_env.db.dbname}))
        monkeypatch.setenv("AIRFLOW_CONN_BHV360_DB", json.dumps(refused))
        expected = "cannot connect to PostgreSQL"
    else:
        spy = pg_tool_spy(tmp_path / "bin", tmp_path / "argv.log", truncate_after=50_000)
        monkeypatch.setenv("AIRFLOW_VAR_BHV360_PG_DUMP_BIN_DIR", str(spy))
        expected = "pg_dump was killed by signal SIGKILL (9)"

    run, states = run_dag(DAG_ID)

    assert states["dump"] == "failed"
    assert states["verify"] == "upstream_failed"
    assert str(run.state.value if hasattr(run.state, "value") else run.state) == "failed"
    for location in (backup_env.local, backup_env.cloud):
        assert scan_backups(location, BackupType.DATABASE) == []
    assert list(backup_env.s3.client().list_objects_v2(Bucket="bhv360-backups").get("Contents", [])) == []
    assert backup_env.s3.client().list_multipart_uploads(Bucket="bhv360-backups").get("Uploads", []) == []

    (mail,) = backup_env.smtp.bodies()
    assert "FAILED bhv360_database_backup.dump" in mail and expected in mail
    assert backup_env.smtp.messages[0]["X-Envelope-To"] == "ops@test.bhv360.nl"
    (slack,) = backup_env.webhook.texts()
    assert "bhv360_database_backup" in slack and "Task: dump (try 1)" in slack and expected in slack
    (line,) = [entry for entry in backup_env.job_log() if entry["type"] == "database"]
    assert line["status"] == "failed" and expected in line["error"]


def test_zstd_mode_compresses_in_the_worker_restores_with_stock_tools_and_the_restore_dag(
        backup_env, restore_db, tmp_path, monkeypatch):
    fill(backup_env.db)
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_DUMP_COMPRESSION", "zstd:3")

    run, states = run_dag(DAG_ID)

    assert states["dump"] == "success" and states["verify"] == "success"
    (backup_id,) = list_backups(backup_env.local, BackupType.DATABASE)
    manifest = read_manifest(backup_env.cloud, BackupType.DATABASE, backup_id)
    dump = manifest.artifact("database.dump.zst")
    assert manifest.details["compression"] == "zstd:3" and dump.compression == "zstd" and dump.encryption is None
    assert dump.plain_size > dump.size
    stored = backup_env.local.path_of(artifact_key(BackupType.DATABASE, backup_id, "database.dump.zst"))
    plain = tmp_path / "database.dump"
    subprocess.run(["zstd", "-q", "-d", str(stored), "-o", str(plain)], check=True)  # the stock tools
    listing = subprocess.run(["pg_restore", "--list", str(plain)], capture_output=True, text=True, check=True).stdout
    assert "Compression: 0" in listing and "TABLE DATA public staff" in listing

    run, states = run_dag("bhv360_restore", {"type": "database", "paths": {"database": "latest"}})

    assert states == {"validate": "success", "restore": "success"}
    assert database_stats(restore_db) == database_stats(backup_env.db)


def test_a_wrong_compression_setting_is_named(backup_env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_DUMP_COMPRESSION", "lz4:1")

    run, states = run_dag(DAG_ID)

    assert states["dump"] == "failed" and list_backups(backup_env.local, BackupType.DATABASE) == []
    (line,) = [entry for entry in backup_env.job_log() if entry["type"] == "database"]
    assert "variable bhv360_dump_compression: 'lz4:1' is not gzip:0-9 or zstd:1-19" in line["error"]
