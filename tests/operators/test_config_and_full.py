"""The daily config backup and the weekly full backup, end to end through Airflow."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from bhv360_backup.repository import retention
from bhv360_backup.repository.catalog import list_backups, read_manifest, scan_backups
from bhv360_backup.repository.layout import BackupType, artifact_key
from bhv360_backup.repository.manifest import utc_now
from bhv360_backup.repository.retention import protected_components
from tests.fixtures.airflow import run_dag


def execute(target, *statements):
    with psycopg.connect(host=target.host, port=target.port, user=target.user, dbname=target.dbname,
                         autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)


@pytest.fixture
def configured_database(backup_env, monkeypatch):
    role = f"bhv360_reader_{uuid.uuid4().hex[:8]}"
    execute(
        backup_env.db,
        "CREATE EXTENSION IF NOT EXISTS pgcrypto",
        f"CREATE ROLE {role} NOLOGIN",
        "CREATE TABLE app_settings (key text PRIMARY KEY, value jsonb NOT NULL)",
        "INSERT INTO app_settings VALUES ('drill_reminder_days', '30'), ('notifications', '{\"email\": true}')",
        "CREATE TABLE incidents (id int PRIMARY KEY, organisation text)",
        "ALTER TABLE incidents ENABLE ROW LEVEL SECURITY",
        f"CREATE POLICY own_org ON incidents FOR SELECT TO {role} USING (organisation = current_user)",
        "CREATE PUBLICATION bhv360_changes FOR TABLE incidents",
        f'ALTER DATABASE "{backup_env.db.dbname}" SET statement_timeout = \'30s\'',
    )
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_CONFIG_TABLES", "public.app_settings")
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_API_TOKEN", "token-canary-value-1c9d")
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_STORAGE_SOURCE", f"folder:{backup_env.root.parent / 'buckets'}")
    (backup_env.root.parent / "buckets" / "certificates" / "org-1").mkdir(parents=True)
    (backup_env.root.parent / "buckets" / "certificates" / "org-1" / "a.pdf").write_bytes(b"%PDF a")
    yield role
    execute(backup_env.db.with_dbname("postgres"), f'DROP DATABASE IF EXISTS "{backup_env.db.dbname}" WITH (FORCE)',
            f"DROP ROLE IF EXISTS {role}")


def config_of(backup_env, backup_id):
    key = artifact_key(BackupType.CONFIG, backup_id, "config.json")
    return backup_env.local.read_bytes(key), backup_env.cloud.read_bytes(key)


def test_config_backup_is_complete_deterministic_and_masks_secrets(backup_env, configured_database):
    role = configured_database
    run_dag("bhv360_config_backup")
    run_dag("bhv360_config_backup")

    first_id, second_id = list_backups(backup_env.local, BackupType.CONFIG)
    local, cloud = config_of(backup_env, first_id)
    assert local == cloud
    assert config_of(backup_env, second_id)[0] == local  # unchanged configuration, same bytes
    document = json.loads(local)
    database = document["database"]
    assert {"name": "pgcrypto", "schema": "public"}.items() <= next(
        e for e in database["extensions"] if e["name"] == "pgcrypto").items()
    assert next(r for r in database["roles"] if r["name"] == role)["can_login"] is False
    assert [p["name"] for p in database["policies"]] == ["own_org"]
    assert database["row_level_security"] == [{"table": "public.incidents", "enabled": True, "forced": False}]
    assert database["publications"][0]["tables"] == ["public.incidents"]
    assert any("statement_timeout=30s" in s["settings"] for s in database["settings"])
    assert document["settings_tables"]["tables"]["public.app_settings"] == [
        {"key": "drill_reminder_days", "value": 30}, {"key": "notifications", "value": {"email": True}}]
    assert document["storage_buckets"]["buckets"] == [
        {"id": "certificates", "public": False, "file_size_limit": None, "allowed_mime_types": None}]
    variables = document["airflow_variables"]
    assert variables["variables"]["bhv360_api_token"] == "***" and "bhv360_api_token" in variables["masked"]
    assert variables["variables"]["bhv360_config_tables"] == "public.app_settings"
    assert "token-canary-value-1c9d" not in local.decode() + (backup_env.log_dir / "jobs.jsonl").read_text()
    assert all("source" in section for section in document.values() if isinstance(section, dict))


def test_an_unreadable_section_fails_and_names_it(backup_env, configured_database, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_CONFIG_TABLES", "public.no_such_table")
    run, states = run_dag("bhv360_config_backup")
    assert states["snapshot"] == "failed"
    assert scan_backups(backup_env.local, BackupType.CONFIG) == [] and scan_backups(backup_env.cloud, BackupType.CONFIG) == []
    (line,) = [e for e in backup_env.job_log() if e["type"] == "config"]
    assert line["error"] == ("config section 'settings_tables' could not be read: "
                             "table public.no_such_table (variable bhv360_config_tables) does not exist")


def test_the_project_is_backed_up_and_a_change_in_the_dashboard_shows_in_the_next_backup(
        backup_env, configured_database, management_api):
    from bhv360_backup.demo.management_api import SOURCE_REF

    run_dag("bhv360_config_backup")
    management_api.projects[SOURCE_REF]["auth"].update(disable_signup=False, external_google_secret="rotated")
    run_dag("bhv360_config_backup")
    first_id, second_id = list_backups(backup_env.local, BackupType.CONFIG)
    first = read_manifest(backup_env.local, BackupType.CONFIG, first_id).details
    second = read_manifest(backup_env.local, BackupType.CONFIG, second_id).details
    assert first["project_changes"] == {} and "auth.site_url" in first["project_fields"]
    assert second["project_changes"] == {"auth.disable_signup": "changed", "auth.external_google_secret": "changed"}
    assert any("secret RESEND_API_KEY" in step for step in second["manual_steps"])
    document = json.loads(config_of(backup_env, second_id)[0])
    assert document["project"]["functions"][0]["body"]["artifact"] == "functions/notify-team.body"
    (line,) = [e for e in backup_env.job_log() if e["type"] == "config"][-1:]
    assert line["project_changes"]["auth.disable_signup"] == "changed"
    alerts = [post["body"] for post in backup_env.webhook.posts]
    assert any("auth.disable_signup" in str(body) for body in alerts), alerts  # on the default watch list


def test_a_config_restore_applies_the_project_to_a_new_one_and_never_silently_to_the_source(
        backup_env, configured_database, management_api, encrypted, restore_db, monkeypatch):
    from bhv360_backup.demo.management_api import FUNCTION_BODY, PROJECT_SECRETS, TARGET_REF

    run_dag("bhv360_config_backup")
    management_api.add_project(TARGET_REF)
    monkeypatch.setenv("AIRFLOW_CONN_BHV360_NEW_PROJECT", management_api.connection_json(TARGET_REF))
    execute(restore_db, "CREATE TABLE app_settings (key text PRIMARY KEY, value jsonb NOT NULL)")
    request = {"type": "config", "paths": {"config": "latest"}}

    run, states = run_dag("bhv360_restore", {**request, "target_project_conn_id": "bhv360_supabase_management"})
    assert states["validate"] == "failed"  # the source project, by its ref: only with confirm_overwrite
    assert "is the source project" in [e for e in backup_env.job_log()
                                       if e["type"] == "restore-validation:config"][-1]["error"]

    run, states = run_dag("bhv360_restore", {**request, "target_project_conn_id": "bhv360_new_project",
                                             "dry_run": True})
    assert states["validate"] == "success" and states["restore"] == "skipped", states
    plan = [e for e in backup_env.job_log() if e["type"] == "restore-validation:config"][-1]["plan"]
    assert any("will set" in line and "auth.external_google_enabled" in line for line in plan), plan
    assert management_api.projects[TARGET_REF]["functions"] == {}  # the dry run wrote nothing

    run, states = run_dag("bhv360_restore", {**request, "target_project_conn_id": "bhv360_new_project"})
    assert states["restore"] == "success", states
    target = management_api.projects[TARGET_REF]
    assert target["auth"]["external_google_secret"] == PROJECT_SECRETS["Google client secret"]
    assert target["functions"]["notify-team"]["body"] == FUNCTION_BODY
    report = [e for e in backup_env.job_log() if e["type"] == "restore:config"][-1]["report"]["config"]["project"]
    assert report["differences_after"] == {} and any("RESEND_API_KEY" in step for step in report["manual_steps"])


def test_a_project_read_that_fails_leaves_no_config_backup(backup_env, configured_database, management_api):
    management_api.denied_scopes.add("edge_functions:read")
    run, states = run_dag("bhv360_config_backup")
    assert states["snapshot"] == "failed"
    assert scan_backups(backup_env.local, BackupType.CONFIG) == [] and scan_backups(backup_env.cloud, BackupType.CONFIG) == []
    (line,) = [e for e in backup_env.job_log() if e["type"] == "config"]
    assert "needs the scope edge_functions:read" in line["error"]


def test_full_backup_names_its_three_components_in_both_locations(backup_env, configured_database):
    execute(backup_env.db, "CREATE SCHEMA storage",
            "CREATE TABLE storage.objects (bucket_id text, name text)",
            "INSERT INTO storage.objects VALUES ('certificates', 'org-1/a.pdf'), ('certificates', 'org-1/lost.pdf')")
    (backup_env.root.parent / "buckets" / "certificates" / "org-1" / "untracked.pdf").write_bytes(b"%PDF u")

    run, states = run_dag("bhv360_full_backup")

    assert set(states.values()) == {"success"}, states
    (full_id,) = list_backups(backup_env.local, BackupType.FULL)
    for location in (backup_env.local, backup_env.cloud):
        manifest = read_manifest(location, BackupType.FULL, full_id)
        components = manifest.details["components"]
        assert set(components) == {"database", "storage", "config"}
        for name, component in components.items():
            assert read_manifest(location, BackupType(name), component["backup_id"]).sha256 == component["manifest_sha256"]
        check = manifest.details["consistency"]["storage_objects"]
        assert (check["rows_without_file"], check["files_without_row"]) == (1, 1)
        assert check["examples_rows_without_file"] == ["certificates/org-1/lost.pdf"]
        assert manifest.details["consistency"]["max_seconds_apart"] < 120
    (line,) = [e for e in backup_env.job_log() if e["type"] == "full"]
    assert line["status"] == "success" and line["consistency"]["storage_objects"]["files_without_row"] == 1


def test_a_failed_component_means_no_full_set_and_an_alert(backup_env, configured_database, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_STORAGE_SOURCE", "folder:/nonexistent/buckets")
    run, states = run_dag("bhv360_full_backup")
    assert states["storage"] == "failed" and states["full_set"] == "upstream_failed"
    assert scan_backups(backup_env.local, BackupType.FULL) == [] and scan_backups(backup_env.cloud, BackupType.FULL) == []
    assert any("FAILED bhv360_full_backup.storage" in mail for mail in backup_env.smtp.bodies())
    assert any("bhv360_full_backup" in text for text in backup_env.webhook.texts())


def test_retention_keeps_the_components_of_a_kept_full_set(backup_env, configured_database):
    run_dag("bhv360_full_backup")
    for _ in range(3):
        run_dag("bhv360_database_backup")
    (full_id,) = list_backups(backup_env.local, BackupType.FULL)
    later = utc_now() + retention.timedelta(days=60)
    policy = retention.RetentionPolicy(days=30, keep_min=3)
    for location in (backup_env.local, backup_env.cloud):
        protected = protected_components(location, policy, later, BackupType.DATABASE)
        assert protected == {full_id}
        report = retention.apply(location, BackupType.DATABASE, policy, later, dry_run=False, protected=protected)
        assert report.deleted == []  # the oldest is the full set's component; the other three are the newest
        assert full_id in list_backups(location, BackupType.DATABASE)
