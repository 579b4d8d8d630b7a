"""The seed's restore API through the real `airflow api-server` on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from bhv360_backup.demo.servers import free_port
from bhv360_backup.locations import LocalLocation
from tests.conftest import AIRFLOW_HOME
from tests.locations.conftest import make_manifest

SEED_STORAGE_BODY = {"type": "storage", "paths": {"storage": "{root}/storage/20261122T020000Z"}}


@pytest.fixture(scope="module")
def api_server(airflow_db, s3_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("api") / "backups"
    location = LocalLocation(root)
    location.put_bytes("database/20261125T000000Z/database.dump", b"x")
    location.write_manifest(make_manifest("20261125T000000Z"))
    port = free_port()
    airflow = str(Path(sys.executable).with_name("airflow"))
    env = {**os.environ,
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "ops:admin,auditor:viewer",
           "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
           "AIRFLOW_VAR_BHV360_BACKUP_ROOT": str(root), "AIRFLOW_CONN_BHV360_S3": s3_server.connection_json()}
    s3_server.reset()
    s3_server.create_bucket("bhv360-backups")
    subprocess.run([airflow, "dags", "reserialize"], env=env, check=True, capture_output=True)
    log = open(AIRFLOW_HOME / "api-server.log", "w")
    process = subprocess.Popen([airflow, "api-server", "--port", str(port), "--host", "127.0.0.1"], env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("airflow api-server did not start: " + (AIRFLOW_HOME / "api-server.log").read_text()[-3000:])
    passwords = json.loads((AIRFLOW_HOME / "simple_auth_manager_passwords.json.generated").read_text())
    yield {"base": base, "root": root, "passwords": passwords}
    process.terminate()
    process.wait(timeout=30)


def token(api, user):
    response = requests.post(f"{api['base']}/auth/token",
                             json={"username": user, "password": api["passwords"][user]}, timeout=10)
    response.raise_for_status()
    return response.json()["access_token"]


def post_restore(api, body, bearer=None):
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return requests.post(f"{api['base']}/api/backup/restore", json=body, headers=headers, timeout=30)


def test_the_seeds_curl_creates_a_restore_run(api_server):
    ops = token(api_server, "ops")
    body = json.loads(json.dumps(SEED_STORAGE_BODY).replace("{root}", str(api_server["root"])))
    response = post_restore(api_server, body, ops)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["dag_id"] == "bhv360_restore" and "/dags/bhv360_restore/runs/" in accepted["url"]
    run = requests.get(f"{api_server['base']}/api/v2/dags/bhv360_restore/dagRuns/{accepted['dag_run_id']}",
                       headers={"Authorization": f"Bearer {ops}"}, timeout=10)
    assert run.status_code == 200
    assert run.json()["conf"]["paths"] == body["paths"] and run.json()["conf"]["type"] == "storage"


def test_no_token_is_401_a_bad_token_403_and_a_viewer_403(api_server):
    assert post_restore(api_server, {"type": "database", "paths": {"database": "latest"}}).status_code == 401
    assert post_restore(api_server, {"type": "database", "paths": {"database": "latest"}}, "not.a.jwt").status_code == 403
    viewer = token(api_server, "auditor")
    assert post_restore(api_server, {"type": "database", "paths": {"database": "latest"}}, viewer).status_code == 403


def test_an_invalid_body_is_422_with_the_problem(api_server):
    ops = token(api_server, "ops")
    response = post_restore(api_server, {"type": "database", "paths": {"database": "/etc/passwd"}}, ops)
    assert response.status_code == 422
    assert any("outside the local backup root" in problem for problem in response.json()["detail"])
    response = post_restore(api_server, {"type": "everything"}, ops)
    assert response.status_code == 422 and "type must be one of" in response.json()["detail"][0]


def test_the_inventory(api_server):
    ops = token(api_server, "ops")
    response = requests.get(f"{api_server['base']}/api/backup/backups", headers={"Authorization": f"Bearer {ops}"},
                            timeout=30)
    assert response.status_code == 200, response.text
    (backup,) = response.json()["backups"]
    assert backup["backup_id"] == "20261125T000000Z" and backup["locations"] == ["local"]
    assert backup["verified"] is False and backup["problems"] == {"s3": "missing"}
    assert requests.get(f"{api_server['base']}/api/backup/backups", timeout=10).status_code == 401
