"""Faults with real components: each run that fails is visible as failed, leaves no manifest for an
unfinished backup, keeps every earlier backup intact, and the next run succeeds."""

from __future__ import annotations

import json
import logging

import psycopg

from bhv360_backup.demo.data import create_demo_database
from bhv360_backup.demo.servers import free_port
from bhv360_backup.repository.catalog import list_backups, read_manifest, scan_backups
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.verify import verify_backup
from tests.fixtures.airflow import run_dag
from tests.fixtures.disks import mount_tmpfs

DAG_ID = "bhv360_database_backup"


def fill(target):
    with psycopg.connect(host=target.host, port=target.port, user="postgres", dbname=target.dbname,
                         autocommit=True) as connection:
        create_demo_database(connection, 1)


def run_dag_with_fault(condition, fault, what: str):
    """Run the DAG while a watcher thread waits for ``condition()`` and then calls ``fault()`` once."""
    import threading
    import time

    injected = threading.Event()

    def watch():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if condition():
                fault()
                injected.set()
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    run, states = run_dag(DAG_ID)
    watcher.join()
    assert injected.is_set(), f"{what}: the moment never came"
    return run, states


def intact(env, backup_id):
    for location in (env.local, env.cloud):
        manifest = read_manifest(location, BackupType.DATABASE, backup_id)
        assert verify_backup(location, manifest, deep=True) == []


def test_s3_down_at_start_keeps_the_local_copy_and_says_the_cloud_copy_is_missing(backup_env, monkeypatch):
    fill(backup_env.db)
    run_dag(DAG_ID)
    (earlier,) = list_backups(backup_env.local, BackupType.DATABASE)
    good_s3 = backup_env.s3.connection_json()
    monkeypatch.setenv("AIRFLOW_CONN_BHV360_S3", backup_env.s3.unreachable_connection_json())

    run, states = run_dag(DAG_ID)

    assert states["dump"] == "failed" and states["verify"] == "upstream_failed"
    local_ids = list_backups(backup_env.local, BackupType.DATABASE)
    assert len(local_ids) == 2  # the local copy of the failed run is complete and listed
    line = [e for e in backup_env.job_log() if e["type"] == "database"][-1]
    assert line["status"] == "failed" and line["locations"] == ["local"]
    assert "is complete only in" in line["error"] and "missing in s3: unreachable" in line["error"]
    assert any("FAILED bhv360_database_backup.dump" in mail for mail in backup_env.smtp.bodies())
    intact(backup_env, earlier)

    monkeypatch.setenv("AIRFLOW_CONN_BHV360_S3", good_s3)
    run, states = run_dag(DAG_ID)
    assert set(states.values()) == {"success"}


class Collector(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_alert_channels_down_the_failure_is_still_recorded(backup_env, monkeypatch):
    fill(backup_env.db)
    run_dag(DAG_ID)
    (earlier,) = list_backups(backup_env.local, BackupType.DATABASE)
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": free_port(),
        "extra": {"disable_ssl": True, "disable_tls": True, "retry_limit": 1, "timeout": 2,
                  "from_email": "airflow@test.bhv360.nl"}}))
    monkeypatch.setenv("AIRFLOW_CONN_BHV360_SLACK_OPS", json.dumps(
        {"conn_type": "slackwebhook", "password": f"http://127.0.0.1:{free_port()}/services/T/B/x"}))
    monkeypatch.setenv("AIRFLOW_CONN_BHV360_DB", json.dumps({"conn_type": "postgres", "host": "127.0.0.1",
                                                             "port": free_port(), "schema": "x", "login": "postgres"}))

    collector = Collector()
    logging.getLogger("bhv360_backup").addHandler(collector)
    try:
        run, states = run_dag(DAG_ID)
    finally:
        logging.getLogger("bhv360_backup").removeHandler(collector)

    assert states["dump"] == "failed"
    line = [e for e in backup_env.job_log() if e["type"] == "database"][-1]
    assert line["status"] == "failed" and "cannot connect to PostgreSQL" in line["error"]
    text = "\n".join(collector.messages)
    assert "could not send the alert by e-mail" in text and "could not send the alert by Slack #ops" in text
    assert backup_env.smtp.messages == [] and backup_env.webhook.posts == []
    intact(backup_env, earlier)


def test_s3_stopped_mid_upload(backup_env, monkeypatch, request):
    """The S3 server goes away while the dump streams: the local copy completes, the run fails naming the
    missing cloud copy, no upload is left open, and after the server is back the next run succeeds."""
    from bhv360_backup.locations import s3 as s3_location
    from tests.fixtures.s3 import S3Server

    with psycopg.connect(host=backup_env.db.host, port=backup_env.db.port, user="postgres",
                         dbname=backup_env.db.dbname, autocommit=True) as connection:
        create_demo_database(connection, 100)  # a dump of about 8 MB: more than one 5 MiB part
    flaky = S3Server().start()  # a server of its own: it can be stopped and started again, its data kept on disk
    request.addfinalizer(flaky.stop)
    flaky.create_bucket("bhv360-backups")
    monkeypatch.setenv("AIRFLOW_CONN_BHV360_S3", flaky.connection_json())
    run_dag(DAG_ID)
    (earlier,) = list_backups(backup_env.local, BackupType.DATABASE)
    monkeypatch.setattr(s3_location, "MIN_PART_SIZE", 5 << 20)  # S3's smallest part: several parts per dump
    client = flaky.client()
    run, states = run_dag_with_fault(lambda: client.list_multipart_uploads(Bucket="bhv360-backups").get("Uploads"),
                                     flaky.halt, "stopping the S3 server mid-upload")
    assert states["dump"] == "failed"
    line = [e for e in backup_env.job_log() if e["type"] == "database"][-1]
    assert line["status"] == "failed" and line["locations"] == ["local"] and "missing in s3" in line["error"]
    assert len(list_backups(backup_env.local, BackupType.DATABASE)) == 2

    flaky.start()  # the same data folder: the earlier backup is still there
    from datetime import timedelta

    from bhv360_backup.locations import S3Location
    from bhv360_backup.repository.manifest import utc_now

    cloud = S3Location(flaky.client(), "bhv360-backups")
    assert list_backups(cloud, BackupType.DATABASE) == [earlier]
    assert len(flaky.client().list_multipart_uploads(Bucket="bhv360-backups")["Uploads"]) == 1  # could not abort
    assert cloud.abort_unfinished(utc_now() + timedelta(hours=25)) == 1  # retention's job
    assert flaky.client().list_multipart_uploads(Bucket="bhv360-backups").get("Uploads", []) == []
    run, states = run_dag(DAG_ID)
    assert set(states.values()) == {"success"}
    flaky.stop()


def test_task_process_killed_mid_run(backup_env, tmp_path):
    """SIGKILL of the process running the dump task: nothing is published; the next run succeeds; the
    leftovers (staging file, open multipart upload) are removed by retention once a day old."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from datetime import timedelta
    from pathlib import Path

    from bhv360_backup.repository import retention
    from bhv360_backup.repository.manifest import utc_now

    with psycopg.connect(host=backup_env.db.host, port=backup_env.db.port, user="postgres",
                         dbname=backup_env.db.dbname, autocommit=True) as connection:
        create_demo_database(connection, 100)
    airflow = str(Path(sys.executable).with_name("airflow"))
    task = subprocess.Popen([airflow, "tasks", "test", DAG_ID, "dump"], env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(backup_env.root.glob("database/*/.partial-*")):
        assert task.poll() is None, "the task ended before it could be killed"
        time.sleep(0.02)
    os.kill(task.pid, signal.SIGKILL)
    task.wait()

    for location in (backup_env.local, backup_env.cloud):
        assert list_backups(location, BackupType.DATABASE) == []
    (leftover,) = scan_backups(backup_env.local, BackupType.DATABASE)
    assert not leftover.complete

    run, states = run_dag(DAG_ID)
    assert set(states.values()) == {"success"}

    later = utc_now() + timedelta(hours=25)
    for location in (backup_env.local, backup_env.cloud):
        retention.apply(location, BackupType.DATABASE, retention.RetentionPolicy(30, 3), later, dry_run=False)
        assert [f.complete for f in scan_backups(location, BackupType.DATABASE)] == [True]
    assert backup_env.s3.client().list_multipart_uploads(Bucket="bhv360-backups").get("Uploads", []) == []


def test_local_disk_full_mid_write(backup_env, monkeypatch, tmp_path):
    """The local file system fills up while the dump streams: the S3 copy completes, the local one is
    removed (no manifest), the run fails naming the missing local copy, earlier backups stay intact,
    and once there is room the next run succeeds."""
    import subprocess

    with psycopg.connect(host=backup_env.db.host, port=backup_env.db.port, user="postgres",
                         dbname=backup_env.db.dbname, autocommit=True) as connection:
        create_demo_database(connection, 100)  # a dump of about 8 MB
    disk = tmp_path / "small-disk"
    mount_tmpfs(disk, "64m")
    try:
        backup_env.root = disk
        monkeypatch.setenv("AIRFLOW_VAR_BHV360_BACKUP_ROOT", str(disk))
        run_dag(DAG_ID)
        (earlier,) = list_backups(backup_env.local, BackupType.DATABASE)
        used = sum(path.stat().st_size for path in disk.rglob("*") if path.is_file())
        subprocess.run(["mount", "-o", f"remount,size={used + (2 << 20)}", str(disk)], check=True)

        run, states = run_dag(DAG_ID)

        assert states["dump"] == "failed" and states["verify"] == "upstream_failed"
        line = [e for e in backup_env.job_log() if e["type"] == "database"][-1]
        assert line["status"] == "failed" and line["locations"] == ["s3"]
        assert "missing in local" in line["error"] and "No space left on device" in line["error"]
        assert list_backups(backup_env.local, BackupType.DATABASE) == [earlier]  # no manifest for the failed run
        assert not list(disk.rglob(".partial-*"))  # the half-written file was removed
        assert len(list_backups(backup_env.cloud, BackupType.DATABASE)) == 2  # the cloud copy is complete
        assert any("FAILED bhv360_database_backup.dump" in mail for mail in backup_env.smtp.bodies())
        intact(backup_env, earlier)

        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        run, states = run_dag(DAG_ID)
        assert set(states.values()) == {"success"}
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=False)


def test_postgres_restarted_mid_dump(backup_env, monkeypatch):
    """The database server restarts while pg_dump streams (on a throwaway cluster of its own): the run
    fails with pg_dump's error, nothing is published anywhere, earlier backups stay intact, and the
    next run succeeds."""
    import subprocess

    from bhv360_backup.demo.servers import ThrowawayCluster
    from tests.conftest import connection_json

    cluster = ThrowawayCluster()  # under /tmp: the postgres user cannot enter pytest's private folders
    try:
        target = cluster.target.with_dbname("postgres")
        fill_orgs = 150  # a dump of about 12 MB: long enough to restart the server in the middle
        with psycopg.connect(host=target.host, port=target.port, user="postgres", dbname="postgres",
                             autocommit=True) as connection:
            create_demo_database(connection, fill_orgs)
        monkeypatch.setenv("AIRFLOW_CONN_BHV360_DB", connection_json(target))
        run_dag(DAG_ID)
        (earlier,) = list_backups(backup_env.local, BackupType.DATABASE)
        def dumping():
            return [p for p in backup_env.root.glob("database/*/.partial-*") if p.stat().st_size > 0]

        def restart():
            subprocess.run([*cluster.run_as, cluster.pg_ctl, "-D", str(cluster.folder / "data"), "-m", "fast", "-w",
                            "restart"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           check=True)

        run, states = run_dag_with_fault(dumping, restart, "restarting the server mid-dump")
        assert states["dump"] == "failed" and states["verify"] == "upstream_failed"
        line = [e for e in backup_env.job_log() if e["type"] == "database"][-1]
        assert line["status"] == "failed" and "pg_dump" in line["error"]
        for location in (backup_env.local, backup_env.cloud):
            assert list_backups(location, BackupType.DATABASE) == [earlier]
        assert not list(backup_env.root.glob("database/*/.partial-*"))
        assert any("FAILED bhv360_database_backup.dump" in mail for mail in backup_env.smtp.bodies())
        intact(backup_env, earlier)

        run, states = run_dag(DAG_ID)
        assert set(states.values()) == {"success"}
    finally:
        cluster.stop()
