"""The Celery scale-out against the real Redis on 127.0.0.1:6379 (a database number of its own), with a
PostgreSQL metadata database, the api-server, scheduler, DAG processor and two Celery workers, one on the
backup host's queue: every BHV360 task runs on that worker, a backup and a restore succeed, a failure alerts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import requests

from bhv360_backup.demo.data import create_demo_database
from bhv360_backup.demo.servers import free_port
from tests.conftest import DB_PASSWORD, connection_json
from tests.fixtures import postgres
from tests.fixtures.airflow import REPO

REDIS = ("127.0.0.1", 6379)
REDIS_DB = 11
QUEUE = "backup-host"


def redis_up() -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(REDIS) == 0


@pytest.fixture(scope="module")
def celery_deployment(pg_server, s3_server, smtp_server, webhook_server, tmp_path_factory):
    if not redis_up():
        if os.environ.get("CI"):
            pytest.fail("no Redis on 127.0.0.1:6379 for the Celery test")
        pytest.skip("no Redis on 127.0.0.1:6379: the Celery scale-out test needs it")
    subprocess.run(["redis-cli", "-n", str(REDIS_DB), "FLUSHDB"], check=True, capture_output=True)
    home = tmp_path_factory.mktemp("celery-airflow")
    metadata = postgres.create_database(pg_server, "bhv360_celery_meta")
    source = postgres.create_database(pg_server, "bhv360_celery_source")
    target = postgres.create_database(pg_server, "bhv360_celery_target")
    with psycopg.connect(host=source.host, port=source.port, user="postgres", dbname=source.dbname,
                         autocommit=True) as connection:
        create_demo_database(connection, 1)
    s3_server.reset()
    s3_server.create_bucket("bhv360-backups")
    port = free_port()
    database = f"postgresql+psycopg2://postgres@127.0.0.1:{pg_server.port}/{metadata.dbname}"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "PG"))}
    env.update({
        "AIRFLOW_HOME": str(home), "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
        "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS[0]}:{REDIS[1]}/{REDIS_DB}",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://postgres@127.0.0.1:{pg_server.port}/{metadata.dbname}",
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "172800",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API_AUTH__JWT_SECRET": "celery-test-jwt-secret",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "ops:admin",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW_VAR_BHV360_QUEUE": QUEUE, "AIRFLOW_VAR_BHV360_INCREMENTAL_INTERVAL_MINUTES": "0",
        "AIRFLOW_VAR_BHV360_BACKUP_ROOT": str(home / "backups"), "AIRFLOW_VAR_BHV360_LOG_DIR": str(home / "logs"),
        "AIRFLOW_VAR_BHV360_ALERT_EMAILS": "ops@test.bhv360.nl",
        "AIRFLOW_CONN_BHV360_DB": connection_json(source), "AIRFLOW_CONN_BHV360_RESTORE_DB": connection_json(target),
        "AIRFLOW_CONN_BHV360_S3": s3_server.connection_json(), "AIRFLOW_CONN_SMTP_DEFAULT": smtp_server.connection_json(),
        "AIRFLOW_CONN_BHV360_SLACK_OPS": webhook_server.connection_json(),
        "AIRFLOW_CONN_NOWHERE_DB": json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": free_port(),
                                              "schema": "x", "login": "postgres"}),
    })
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    logs = home / "process-logs"
    logs.mkdir()
    commands = {
        "api-server": ["api-server", "--port", str(port), "--host", "127.0.0.1"],
        "scheduler": ["scheduler"], "dag-processor": ["dag-processor"],
        "worker-general": ["celery", "worker", "--queues", "default", "--concurrency", "2",
                           "--celery-hostname", "general@%h"],
        "worker-backup-host": ["celery", "worker", "--queues", QUEUE, "--concurrency", "2",
                               "--celery-hostname", "backup@%h"],
    }
    hosts = {"worker-general": "tests.fixtures.celery_hosts.general_worker",
             "worker-backup-host": "tests.fixtures.celery_hosts.backup_host_worker"}
    processes = []
    for name, args in commands.items():
        process_env = {**env, **({"AIRFLOW__CORE__HOSTNAME_CALLABLE": hosts[name]} if name in hosts else {})}
        processes.append(subprocess.Popen([airflow, *args], env=process_env, stdout=open(logs / f"{name}.log", "w"),
                                          stderr=subprocess.STDOUT))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200, 120,
                 "the api-server", logs)
        passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        token = requests.post(f"{base}/auth/token", json={"username": "ops", "password": passwords["ops"]},
                              timeout=10).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        wait_for(lambda: requests.get(f"{base}/api/v2/dags/bhv360_restore", headers=headers, timeout=5).status_code
                 == 200, 120, "the DAG processor to load the DAGs", logs)
        yield {"base": base, "headers": headers, "logs": logs, "target": target, "env": env}
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        subprocess.run(["redis-cli", "-n", str(REDIS_DB), "FLUSHDB"], capture_output=True)
        for database in (metadata, source, target):
            postgres.drop_database(database)


def wait_for(condition, seconds, what, logs):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    tails = {path.name: path.read_text()[-1500:] for path in logs.glob("*.log")}
    pytest.fail(f"timed out waiting for {what}: {json.dumps(tails, indent=1)}")


def finished_run(deployment, dag_id, run_id, seconds=240):
    url = f"{deployment['base']}/api/v2/dags/{dag_id}/dagRuns/{run_id}"
    state = {}

    def done():
        state.update(requests.get(url, headers=deployment["headers"], timeout=10).json())
        return state.get("state") in ("success", "failed")

    wait_for(done, seconds, f"{dag_id} run {run_id}", deployment["logs"])
    instances = requests.get(f"{url}/taskInstances", headers=deployment["headers"], timeout=10).json()["task_instances"]
    return state["state"], {ti["task_id"]: (ti["state"], ti["hostname"], ti["queue"]) for ti in instances}


def trigger(deployment, dag_id, conf=None):
    response = requests.post(f"{deployment['base']}/api/v2/dags/{dag_id}/dagRuns", headers=deployment["headers"],
                             json={"logical_date": None, "conf": conf or {}}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["dag_run_id"]


def test_every_task_runs_on_the_backup_hosts_worker_and_a_backup_and_restore_succeed(celery_deployment):
    state, tasks = finished_run(celery_deployment, "bhv360_database_backup",
                                trigger(celery_deployment, "bhv360_database_backup"))
    assert state == "success", tasks
    assert {hostname for _, hostname, _ in tasks.values()} == {"backup-host-worker"}
    assert {queue for _, _, queue in tasks.values()} == {QUEUE}

    response = requests.post(f"{celery_deployment['base']}/api/backup/restore", headers=celery_deployment["headers"],
                             json={"type": "database", "paths": {"database": "latest"}}, timeout=30)
    assert response.status_code == 202, response.text
    state, tasks = finished_run(celery_deployment, "bhv360_restore", response.json()["dag_run_id"])
    assert state == "success", tasks
    assert {hostname for _, hostname, _ in tasks.values()} == {"backup-host-worker"}
    target = celery_deployment["target"]
    with psycopg.connect(host=target.host, port=target.port, user="postgres", dbname=target.dbname) as connection:
        assert connection.execute("SELECT count(*) FROM staff").fetchone()[0] > 0


def test_a_failure_on_the_celery_worker_alerts(celery_deployment, smtp_server, webhook_server):
    before_mail, before_posts = len(smtp_server.messages), len(webhook_server.posts)
    run_id = trigger(celery_deployment, "bhv360_restore",
                     {"type": "database", "paths": {"database": "latest"}, "target_conn_id": "nowhere_db"})
    state, tasks = finished_run(celery_deployment, "bhv360_restore", run_id)
    assert state == "failed" and tasks["validate"][0] == "failed" and tasks["validate"][1] == "backup-host-worker"
    wait_for(lambda: len(smtp_server.messages) > before_mail and len(webhook_server.posts) > before_posts, 60,
             "the failure alert", celery_deployment["logs"])
    assert any("FAILED bhv360_restore.validate" in body for body in smtp_server.bodies()[before_mail:])
    assert DB_PASSWORD not in json.dumps([p["body"] for p in webhook_server.posts])
