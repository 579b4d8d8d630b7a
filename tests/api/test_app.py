"""The seed's restore API through the real `airflow api-server` on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import hypothesis
import pytest
import requests
import schemathesis

from bhv360_backup import joblog
from bhv360_backup.demo.servers import free_port
from bhv360_backup.locations import LocalLocation
from bhv360_backup.repository.catalog import write_manifest
from bhv360_backup.restore.request import parse_request
from tests.conftest import AIRFLOW_HOME
from tests.locations.conftest import make_manifest

SEED_STORAGE_BODY = {"type": "storage", "paths": {"storage": "{root}/storage/20261122T020000Z"}}


@pytest.fixture(scope="module")
def api_server(airflow_db, s3_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("api") / "backups"
    log_dir = root.parent / "logs"
    location = LocalLocation(root)
    location.put_bytes("database/20261125T000000Z/database.dump", b"x")
    write_manifest(location, make_manifest("20261125T000000Z"))
    joblog.append(log_dir, {"type": "drill", "status": "success", "time": "2026-11-21T08:12:00Z",
                            "restore_seconds": 41.5, "rows": 120000, "objects": 50, "dag_id": "bhv360_restore_drill",
                            "run_id": "scheduled__2026-11-21T08:00:00+00:00", "task_id": "drill"})
    for day in range(1, 25):  # three weeks of nightly database backups, one failed night
        joblog.append(log_dir, {"type": "database", "status": "failed" if day == 12 else "success",
                                "time": f"2026-11-{day:02d}T00:05:00Z", "bytes": 6_200_000 + day * 40_000,
                                "duration_s": 20 + day % 5, "dag_id": "bhv360_database_backup",
                                "run_id": f"scheduled__2026-11-{day:02d}", "task_id": "dump",
                                "backup_id": f"202611{day:02d}T000000Z", "error": "pg_dump failed (exit 1)"})
    joblog.append(log_dir, {"type": "health", "status": "failed", "time": "2026-11-25T06:00:00Z",
                            "dag_id": "bhv360_backup_health", "run_id": "scheduled__2026-11-25", "task_id": "check",
                            "findings": ["database @ s3: no complete backup"]})
    port = free_port()
    airflow = str(Path(sys.executable).with_name("airflow"))
    env = {**os.environ,
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "ops:admin,auditor:viewer",
           "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
           "AIRFLOW_VAR_BHV360_BACKUP_ROOT": str(root), "AIRFLOW_VAR_BHV360_LOG_DIR": str(log_dir),
           "AIRFLOW_CONN_BHV360_S3": s3_server.connection_json()}
    s3_server.reset()
    s3_server.create_bucket("bhv360-backups")
    subprocess.run([airflow, "dags", "reserialize"], env=env, check=True, capture_output=True)
    subprocess.run([airflow, "dags", "unpause", "bhv360_restore"], env=env, check=True, capture_output=True)
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
    yield {"base": base, "root": root, "passwords": passwords, "airflow": lambda *args: subprocess.run(
        [airflow, *args], env=env, check=True, capture_output=True)}
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


def test_a_retried_request_gets_its_first_run_and_another_active_restore_is_named(api_server):
    ops = token(api_server, "ops")
    body = {"type": "database", "paths": {"database": "latest"}, "dry_run": True}
    headers = {"Authorization": f"Bearer {ops}", "Idempotency-Key": "change-4711"}
    url = f"{api_server['base']}/api/backup/restore"
    first = requests.post(url, json=body, headers=headers, timeout=30).json()
    again = requests.post(url, json=body, headers=headers, timeout=30).json()
    assert again["dag_run_id"] == first["dag_run_id"] and again["reused"] is True and first["reused"] is False
    other = post_restore(api_server, body, ops).json()  # no scheduler here: the first run is still queued
    assert first["dag_run_id"] in other["active_restores"] and other["dag_run_id"] != first["dag_run_id"]
    assert other["detail"].startswith("another restore is active")


def test_a_paused_restore_dag_is_refused_with_409_and_no_run(api_server):
    ops = token(api_server, "ops")
    api_server["airflow"]("dags", "pause", "bhv360_restore")
    try:
        response = post_restore(api_server, {"type": "database", "paths": {"database": "latest"}}, ops)
    finally:
        api_server["airflow"]("dags", "unpause", "bhv360_restore")
    assert response.status_code == 409, response.text
    assert "bhv360_restore is paused" in response.json()["detail"]
    assert "airflow dags unpause bhv360_restore" in response.json()["detail"]
    assert post_restore(api_server, {"type": "database", "paths": {"database": "latest"}}, ops).status_code == 202


def test_a_restore_dag_not_loaded_yet_is_503_not_a_traceback(api_server):
    """As on a fresh deployment before the DAG processor ran, or with the DAG file failing to import."""
    ops = token(api_server, "ops")
    api_server["airflow"]("dags", "delete", "bhv360_restore", "--yes")
    try:
        response = post_restore(api_server, {"type": "database", "paths": {"database": "latest"}}, ops)
    finally:
        api_server["airflow"]("dags", "reserialize")
        api_server["airflow"]("dags", "unpause", "bhv360_restore")
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "60"
    assert "is not loaded in Airflow yet" in response.json()["detail"] and "Traceback" not in response.text


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


def test_the_dashboard_in_a_headless_browser(api_server, tmp_path):
    from playwright.sync_api import sync_playwright

    ops = token(api_server, "ops")
    assert requests.get(f"{api_server['base']}/api/backup/dashboard", timeout=10).status_code == 401
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        shots = {}
        for scheme in ("light", "dark"):
            context = browser.new_context(color_scheme=scheme, viewport={"width": 1280, "height": 900})
            context.add_cookies([{"name": "_token", "value": ops, "url": api_server["base"]}])
            page = context.new_page()
            response = page.goto(f"{api_server['base']}/api/backup/dashboard")
            assert response.status == 200
            card = page.locator("#state .card[data-type='database']")
            assert "20261125T000000Z" in card.inner_text()
            assert card.locator(".badge").inner_text() in ("late", "ok")
            assert "s3: missing" in card.inner_text() and "local: verified" in card.inner_text()
            assert card.locator("a", has_text="log").get_attribute("href").endswith("/tasks/dump")
            assert "41.5 s" in page.locator(".card[data-type='drill']").inner_text()
            assert "database @ s3: no complete backup" in page.locator("#findings").inner_text()
            assert "Recovery point" in page.locator("#recovery-point").inner_text()
            charts = page.locator(f".chart-{scheme} svg")
            assert charts.count() >= 2 and charts.first.is_visible()  # the theme's rendering shows
            assert "MB" in charts.first.inner_html() and "Nov" in charts.first.inner_html()  # unit and dates
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert (background == "rgb(26, 32, 44)") == (scheme == "dark")
            assert "20261125T000000Z" in page.locator("#inventory").inner_text()
            shots[scheme] = tmp_path / f"dashboard-{scheme}.png"
            page.screenshot(path=str(shots[scheme]), full_page=True)
            if os.environ.get("BHV360_SCREENSHOT_DIR"):
                page.screenshot(path=os.path.join(os.environ["BHV360_SCREENSHOT_DIR"], f"dashboard-{scheme}.png"),
                                full_page=True)
            context.close()
        browser.close()
    for shot in shots.values():
        assert shot.stat().st_size > 50_000


def test_the_ui_lists_the_backups_page(api_server):
    ops = token(api_server, "ops")
    plugins = requests.get(f"{api_server['base']}/api/v2/plugins", headers={"Authorization": f"Bearer {ops}"},
                           timeout=10).json()["plugins"]
    (plugin,) = [p for p in plugins if p["name"] == "bhv360_backup"]
    assert plugin["external_views"][0]["href"] == "/api/backup/dashboard"


@pytest.fixture(scope="module")
def ops_token(api_server):
    token_value = token(api_server, "ops")
    created: list[str] = []
    yield token_value, created
    for run_id in created:  # leave no queued restore run behind for the other tests
        requests.delete(f"{api_server['base']}/api/v2/dags/bhv360_restore/dagRuns/{quote(run_id, safe='')}",
                        headers={"Authorization": f"Bearer {token_value}"}, timeout=10)


def test_schemathesis_finds_no_server_error_traceback_or_escape(api_server, ops_token):
    """Requests generated from the published OpenAPI schema, valid and invalid: never a 5xx or a
    traceback, every answer as documented, nothing the schema forbids accepted, and nothing accepted
    that the restore's own validation (paths inside the locations) refuses."""
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_schema_conformance,
        status_code_conformance,
    )

    bearer, created = ops_token
    schema = schemathesis.openapi.from_url(f"{api_server['base']}/api/backup/openapi.json")
    cases = hypothesis.strategies.one_of(schema.as_strategy(GenerationMode.POSITIVE),
                                         schema.as_strategy(GenerationMode.NEGATIVE))
    seen: dict[str, int] = {}

    @hypothesis.given(case=cases)
    @hypothesis.settings(max_examples=200, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    def exercise(case):
        response = case.call(base_url=f"{api_server['base']}/api/backup", headers={"Authorization": f"Bearer {bearer}"})
        case.validate_response(response, checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                                 response_schema_conformance, negative_data_rejection])
        assert "Traceback" not in response.text and 'File "' not in response.text
        seen[f"{case.method} {case.path} {response.status_code}"] = seen.get(f"{case.method} {case.path} {response.status_code}", 0) + 1
        if response.status_code == 202:
            created.append(response.json()["dag_run_id"])
            accepted = parse_request(case.body, backup_root=str(api_server["root"]), bucket="bhv360-backups")
            for spec in accepted.paths.values():
                assert spec.kind in ("latest", "id") or spec.value.startswith(
                    (str(api_server["root"]), "s3://bhv360-backups/"))

    exercise()
    print(seen)
    assert {"POST /restore 202", "POST /restore 422", "GET /backups 200"} <= set(seen)
