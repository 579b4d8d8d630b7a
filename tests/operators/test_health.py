"""The daily health check finds stale, missing, damaged backups and failed drills, and alerts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bhv360_backup import joblog
from bhv360_backup.repository.catalog import delete_backup, read_manifest, write_manifest
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import iso, utc_now
from tests.fixtures.airflow import run_dag
from tests.fixtures.stored import store

DAG_ID = "bhv360_backup_health"


@pytest.fixture
def healthy(backup_env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_INCREMENTAL_INTERVAL_MINUTES", "0")  # checked on its own below
    ids = {}
    for backup_type, age in ((BackupType.DATABASE, timedelta(hours=3)), (BackupType.CONFIG, timedelta(hours=2)),
                             (BackupType.FULL, timedelta(days=2))):
        ids[backup_type] = store((backup_env.local, backup_env.cloud), backup_type, age)
    from bhv360_backup.producers.storage import take_snapshot
    from bhv360_backup.repository.writer import BackupWriter
    from bhv360_backup.sources.storage import LocalFolderSource

    source = backup_env.root.parent / "buckets" / "b"
    source.mkdir(parents=True)
    (source / "x.txt").write_text("x")
    writer = BackupWriter([backup_env.local, backup_env.cloud], BackupType.STORAGE, "20261125T000000Z")
    take_snapshot(LocalFolderSource(source.parent), writer, dag_id="t", run_id="t")
    joblog.append(backup_env.log_dir, {"type": "drill", "status": "success", "time": iso(utc_now())})
    return ids


def test_all_well_is_green_and_silent(backup_env, healthy):
    run, states = run_dag(DAG_ID)
    assert states == {"check": "success"}
    assert backup_env.smtp.messages == [] and backup_env.webhook.posts == []


def stale(env, ids):
    delete_backup(env.local, BackupType.DATABASE, ids[BackupType.DATABASE])
    delete_backup(env.cloud, BackupType.DATABASE, ids[BackupType.DATABASE])
    backup_id = store((env.local, env.cloud), BackupType.DATABASE, timedelta(hours=30))
    return f"database @ local: {backup_id}: newest backup is 30.0 h old"


def missing_copy(env, ids):
    delete_backup(env.cloud, BackupType.CONFIG, ids[BackupType.CONFIG])
    return "config @ s3: no complete backup"


def corrupt(env, ids):
    env.cloud.put_bytes(f"full/{ids[BackupType.FULL]}/data.bin", b"short")
    return f"full @ s3: {ids[BackupType.FULL]}: s3:full/{ids[BackupType.FULL]}/data.bin: data.bin is 5 bytes"


def failed_drill(env, ids):
    joblog.append(env.log_dir, {"type": "drill", "status": "failed", "time": iso(utc_now()),
                                "error": "restored database does not match backup"})
    return "restore drill: the newest drill failed: restored database does not match backup"


@pytest.mark.parametrize("damage", [stale, missing_copy, corrupt, failed_drill], ids=lambda f: f.__name__)
def test_each_finding_alerts_with_the_table(backup_env, healthy, damage):
    expected = damage(backup_env, healthy)
    run, states = run_dag(DAG_ID)
    assert states == {"check": "failed"}
    (mail,) = backup_env.smtp.bodies()
    (slack,) = backup_env.webhook.texts()
    for message in (mail, slack):
        assert expected in message
        assert "type      where  backup" in message  # the state table


def test_a_damaged_older_backup_is_shown_on_its_own_row(backup_env, healthy, monkeypatch):
    from bhv360_backup import health

    older = store([backup_env.cloud], BackupType.DATABASE, timedelta(days=3))
    backup_env.local.put_bytes(f"database/{older}/data.bin", b"backup bytes")
    write_manifest(backup_env.local, read_manifest(backup_env.cloud, BackupType.DATABASE, older))
    backup_env.cloud.put_bytes(f"database/{older}/data.bin", b"bitrot")
    monkeypatch.setattr(health, "deep_check_due", lambda ids, *args, **kwargs: list(ids))

    report = health.check([backup_env.local, backup_env.cloud], utc_now(), backup_env.log_dir)

    (finding,) = [f for f in report.findings if f.backup_id == older]
    assert finding.location == "s3" and "data.bin" in finding.problem
    rows = {(row.type, row.location, row.backup): row.state for row in report.rows}
    assert rows[("database", "s3", older)] == "DAMAGED"
    assert rows[("database", "s3", healthy[BackupType.DATABASE])] == "ok"  # the newest is not blamed


def test_the_run_records_what_it_read_back_in_full(backup_env, healthy):
    run, states = run_dag(DAG_ID)
    (line,) = [entry for entry in backup_env.job_log() if entry["type"] == "health"]
    assert line["status"] == "success"
    for location in ("local", "s3"):
        assert line["deep_checked"][location]["database"] == [healthy[BackupType.DATABASE]]
        assert line["blobs_read"][location] == 1  # the first run reads every blob it has no record of
