"""The incremental backup DAG end to end on a wal_level = logical cluster: capture, the slot moved only
after both copies, a schema change starting a new chain, a restore to a point in time, the health check."""

from __future__ import annotations

import json

import psycopg
import pytest

from bhv360_backup.repository.catalog import list_backups, read_manifest
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.sources.changes import ChangeSource
from tests.conftest import connection_json
from tests.fixtures import postgres
from tests.fixtures.airflow import run_dag


@pytest.fixture
def source(backup_env, logical_db, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_BHV360_DB", connection_json(logical_db))
    with psycopg.connect(host=logical_db.host, port=logical_db.port, user="postgres", dbname=logical_db.dbname,
                         autocommit=True) as connection:
        connection.execute("CREATE TABLE drills (id serial PRIMARY KEY, site text NOT NULL, minutes int)")
    return logical_db


def execute(target, statement):
    with psycopg.connect(host=target.host, port=target.port, user="postgres", dbname=target.dbname,
                         autocommit=True) as connection:
        connection.execute(statement)
        return connection.execute("SELECT clock_timestamp()").fetchone()[0]


def test_capture_moves_the_slot_a_schema_change_starts_a_chain_and_a_point_in_time_restores(
        backup_env, source, restore_db, monkeypatch):
    run, states = run_dag("bhv360_incremental_backup")
    # the slot is new: what it captures follows no dump yet, so a database backup starts the chain now
    assert states == {"capture": "success", "needs_new_chain": "success", "new_chain": "success"}
    run_dag("bhv360_database_backup")
    moment = execute(source, "INSERT INTO drills (site, minutes) VALUES ('Oost', 12), ('West', 9)")
    execute(source, "UPDATE drills SET minutes = 99")

    run, states = run_dag("bhv360_incremental_backup")
    assert states == {"capture": "success", "needs_new_chain": "success", "new_chain": "skipped"}
    segments = list_backups(backup_env.local, BackupType.INCREMENTAL)
    assert segments == list_backups(backup_env.cloud, BackupType.INCREMENTAL) and len(segments) == 2
    newest = read_manifest(backup_env.local, BackupType.INCREMENTAL, segments[-1]).details
    assert (newest["transactions"], newest["changes"]) == (2, 4)
    assert ChangeSource(source, "bhv360_backup").state().confirmed_flush_lsn == newest["end_lsn"]
    line = [e for e in backup_env.job_log() if e["type"] == "incremental"][-1]
    assert line["status"] == "success" and line["end_lsn"] == newest["end_lsn"] and line["locations"] == ["local", "s3"]

    run, states = run_dag("bhv360_restore", {"type": "database", "paths": {"database": "latest"},
                                             "point_in_time": moment.isoformat()})
    assert states == {"validate": "success", "restore": "success"}
    with psycopg.connect(host=restore_db.host, port=restore_db.port, user="postgres", dbname=restore_db.dbname) as c:
        assert c.execute("SELECT site, minutes FROM drills ORDER BY site").fetchall() == [("Oost", 12), ("West", 9)]
    report = [e for e in backup_env.job_log() if e["type"] == "restore:database"][-1]["report"]["database"]
    assert report["point_in_time"]["transactions"] == 1 and report["point_in_time"]["stopped"] is None

    run, states = run_dag("bhv360_restore_drill")  # restores to a moment between the two newest segments
    assert states == {"drill": "success"}
    drill = [e for e in backup_env.job_log() if e["type"] == "drill"][-1]
    assert drill["point_in_time"]["stopped"] is None and drill["point_in_time"]["reflects"]

    execute(source, "ALTER TABLE drills ADD COLUMN team text")
    run, states = run_dag("bhv360_incremental_backup")
    assert states == {"capture": "success", "needs_new_chain": "success", "new_chain": "success"}  # a new dump
    newest = read_manifest(backup_env.local, BackupType.INCREMENTAL,
                                            list_backups(backup_env.local, BackupType.INCREMENTAL)[-1]).details
    assert newest["schema_changed"] == {"tables": ["public.drills"]}
    from airflow.models.dagrun import DagRun

    assert any(r.conf is not None or r.run_type for r in DagRun.find(dag_id="bhv360_database_backup"))


def test_the_health_check_reads_the_slot(backup_env, source, monkeypatch):
    run_dag("bhv360_incremental_backup")
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_INCREMENTAL_MAX_RETAINED_MB", "1")
    execute(source, "INSERT INTO drills (site) SELECT 'site ' || g FROM generate_series(1, 30000) g")
    run, states = run_dag("bhv360_backup_health")
    line = [e for e in backup_env.job_log() if e["type"] == "health"][-1]
    assert line["slot"]["name"] == "bhv360_backup" and line["slot"]["retained_bytes"] > 1_000_000
    assert any("replication slot bhv360_backup holds" in finding for finding in line["findings"])
    postgres.drop_slots(source)
    run, states = run_dag("bhv360_backup_health")
    line = [e for e in backup_env.job_log() if e["type"] == "health"][-1]
    assert any("replication slot bhv360_backup does not exist" in finding for finding in line["findings"])
    assert json.dumps(line).count("incremental") >= 1
