"""Restores through the bhv360_restore DAG: round trips, fallback to S3, refusals that touch nothing."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from bhv360_backup.repository.catalog import delete_backup, list_backups
from bhv360_backup.repository.layout import BackupType, artifact_key
from bhv360_backup.restore.validate import database_stats
from tests.fixtures import postgres
from tests.fixtures.airflow import run_dag, xcom_values

RESTORE = "bhv360_restore"


def execute(target, *statements):
    with psycopg.connect(host=target.host, port=target.port, user=target.user, dbname=target.dbname,
                         autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)


def tables(target):
    return database_stats(target)


def plan_of(run):
    (validated,) = xcom_values(RESTORE, run.run_id, "validate")
    return validated["plan"]


def test_database_round_trip_with_success_message(backup_env, restore_db, database_backup):
    run, states = run_dag(RESTORE, {"type": "database", "paths": {"database": "latest"}})
    assert states == {"validate": "success", "restore": "success"}
    assert tables(restore_db) == tables(backup_env.db)
    line = next(e for e in backup_env.job_log() if e["type"] == "restore:database")
    assert line["status"] == "success" and line["backup_id"] == database_backup
    assert any("restore of database succeeded" in mail for mail in backup_env.smtp.bodies())
    assert any("restore of database succeeded" in text for text in backup_env.webhook.texts())


@pytest.mark.parametrize("damage", ["corrupt", "delete"])
def test_falls_back_to_s3_when_the_local_copy_is_damaged(backup_env, restore_db, database_backup, damage):
    dump = backup_env.local.path_of(artifact_key(BackupType.DATABASE, database_backup, "database.dump"))
    if damage == "corrupt":
        data = bytearray(dump.read_bytes())
        data[len(data) // 2] ^= 0xFF
        dump.write_bytes(bytes(data))
    else:
        delete_backup(backup_env.local, BackupType.DATABASE, database_backup)
    run, states = run_dag(RESTORE, {"type": "database", "paths": {"database": database_backup}})
    assert states == {"validate": "success", "restore": "success"}
    (component,) = plan_of(run)["components"]
    assert component["location"] == "s3"
    assert ("sha256" in component["fallback_reason"]) if damage == "corrupt" else ("no manifest" in component["fallback_reason"])
    assert tables(restore_db) == tables(backup_env.db)


def test_dry_run_validates_and_restores_nothing(backup_env, restore_db, database_backup):
    run, states = run_dag(RESTORE, {"type": "database", "paths": {"database": "latest"}, "dry_run": True})
    assert states == {"validate": "success", "restore": "skipped"}
    assert tables(restore_db) == {}
    assert plan_of(run)["components"][0]["backup_id"] == database_backup


def corrupt_everywhere(env, backup_id):
    key = artifact_key(BackupType.DATABASE, backup_id, "database.dump")
    for location in (env.local, env.cloud):
        data = bytearray(location.read_bytes(key))
        data[100] ^= 0xFF
        location.put_bytes(key, bytes(data))


REFUSALS = {
    "no such backup": ({"type": "database", "paths": {"database": "20200101T000000Z"}}, None,
                       "database backup 20200101T000000Z does not exist in any location"),
    "type mismatch": ({"type": "database", "paths": {"database": "{root}/storage/{id}"}}, None,
                      "points to a storage backup, not a database backup"),
    "damaged in both locations": ({"type": "database", "paths": {"database": "latest"}}, corrupt_everywhere,
                                  "has no intact copy"),
    "production without confirmation": ({"type": "database", "paths": {"database": "latest"},
                                         "target_conn_id": "bhv360_db"}, None,
                                        "is the production database bhv360_db: set confirm_overwrite"),
    "unreachable target": ({"type": "database", "paths": {"database": "latest"}, "target_conn_id": "nowhere_db"},
                           None, "cannot connect to PostgreSQL"),
    "missing connection": ({"type": "database", "paths": {"database": "latest"}, "target_conn_id": "no_such_conn"},
                           None, "Airflow connection 'no_such_conn'"),
    "outside the root": ({"type": "database", "paths": {"database": "/etc/passwd"}}, None,
                         "outside the local backup root"),
    "production storage without confirmation": ({"type": "storage", "paths": {"storage": "latest"},
                                                 "storage_target": "supabase"}, None,
                                                "is the production project"),
    "production storage by another connection's name": ({"type": "storage", "paths": {"storage": "latest"},
                                                         "storage_target": "supabase:prod_again"}, None,
                                                        "storage_target 'supabase:prod_again' is the production project"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refused_requests_leave_the_target_untouched(backup_env, restore_db, database_backup, monkeypatch, case):
    conf, damage, message = REFUSALS[case]
    if damage:
        damage(backup_env, database_backup)
    monkeypatch.setenv("AIRFLOW_CONN_NOWHERE_DB", json.dumps({"conn_type": "postgres", "host": "127.0.0.1",
                                                              "port": postgres.free_port(), "schema": "x",
                                                              "login": "postgres"}))
    project = {"conn_type": "generic", "host": "https://abcd1234.supabase.co", "password": "service-key"}
    monkeypatch.setenv("AIRFLOW_CONN_BHV360_SUPABASE", json.dumps(project))
    monkeypatch.setenv("AIRFLOW_CONN_PROD_AGAIN", json.dumps({**project, "host": "ABCD1234.supabase.co/"}))
    conf = json.loads(json.dumps(conf).replace("{root}", str(backup_env.root)).replace("{id}", database_backup))
    before = tables(backup_env.db)
    run, states = run_dag(RESTORE, conf)
    assert states == {"validate": "failed", "restore": "upstream_failed"}
    assert tables(restore_db) == {} and tables(backup_env.db) == before
    line = next(e for e in backup_env.job_log() if e["type"].startswith("restore-validation"))
    assert line["status"] == "failed" and message in line["error"], line["error"]
    if damage:  # the backup was resolved before its copies were found damaged: the line names it
        assert line["backup_id"] == database_backup


def test_storage_round_trip_to_a_folder_and_back_into_supabase(backup_env, storage_api):
    storage_api.create_bucket("certificates", public=False, allowed_mime_types=["application/pdf"])
    storage_api.put("certificates", "org-1/staff 1/BHV basis.pdf", b"%PDF-1.4 cert", "application/pdf", "max-age=60")
    storage_api.put("certificates", "org-1/empty.txt", b"", "text/plain")
    run_dag("bhv360_storage_backup")

    run, states = run_dag(RESTORE, {"type": "storage", "paths": {"storage": "latest"}})
    assert states["restore"] == "success"
    restored = backup_env.root / "restore" / run.run_id.replace(":", "_").replace("+", "_") / "storage"
    assert (restored / "certificates" / "org-1" / "staff 1" / "BHV basis.pdf").read_bytes() == b"%PDF-1.4 cert"
    assert (restored / "certificates" / "org-1" / "empty.txt").read_bytes() == b""

    storage_api.reset()  # the project lost its bucket and files
    run, states = run_dag(RESTORE, {"type": "storage", "paths": {"storage": "latest"}, "storage_target": "supabase",
                                    "confirm_overwrite": True})
    assert states["restore"] == "success"
    assert storage_api.buckets["certificates"]["allowed_mime_types"] == ["application/pdf"]
    record = storage_api.objects[("certificates", "org-1/staff 1/BHV basis.pdf")]
    assert (record["mimetype"], record["cacheControl"]) == ("application/pdf", "max-age=60")
    with open(record["file"], "rb") as handle:
        assert handle.read() == b"%PDF-1.4 cert"

    storage_api.requests.clear()
    run, states = run_dag(RESTORE, {"type": "storage", "paths": {"storage": "latest"}, "storage_target": "supabase",
                                    "confirm_overwrite": True})
    assert states["restore"] == "success"
    assert [r for r in storage_api.requests if r[0] == "POST" and r[1].startswith("/storage/v1/object/certificates")] == []


def test_config_round_trip(backup_env, restore_db, monkeypatch, tmp_path):
    execute(backup_env.db, "CREATE TABLE app_settings (key text PRIMARY KEY, value jsonb NOT NULL)",
            "INSERT INTO app_settings VALUES ('drill_reminder_days', '30'), ('notifications', '{\"email\": true}')")
    execute(restore_db, "CREATE TABLE app_settings (key text PRIMARY KEY, value jsonb NOT NULL)",
            "INSERT INTO app_settings VALUES ('drill_reminder_days', '7')")
    config_file = tmp_path / "etc" / "bhv360.conf"
    config_file.parent.mkdir()
    config_file.write_text("region = eu\n")
    config_file.chmod(0o640)
    (tmp_path / "buckets" / "certificates").mkdir(parents=True)
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_CONFIG_TABLES", "public.app_settings")
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_CONFIG_PATHS", str(config_file.parent))
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_API_TOKEN", "token-canary-value-1c9d")
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_STORAGE_SOURCE", f"folder:{tmp_path / 'buckets'}")
    run_dag("bhv360_config_backup")

    run, states = run_dag(RESTORE, {"type": "config", "paths": {"config": "latest"}})
    assert states["restore"] == "success"
    with psycopg.connect(host=restore_db.host, port=restore_db.port, user="postgres", dbname=restore_db.dbname) as c:
        assert dict(c.execute("SELECT key, value FROM app_settings").fetchall()) == {
            "drill_reminder_days": 30, "notifications": {"email": True}}
    report = next(e for e in backup_env.job_log() if e["type"] == "restore:config")["report"]["config"]
    assert report["masked_variables_to_set_by_hand"] == ["bhv360_api_token"]
    assert "bhv360_config_tables" in report["variables_not_set"]  # not without confirm_overwrite
    (written,) = report["files"]
    assert written.endswith("etc/bhv360.conf") and open(written).read() == "region = eu\n"
    assert oct(__import__("os").stat(written).st_mode & 0o777) == "0o640"


def test_full_latest_restores_the_set_then_applies_a_newer_dump(backup_env, restore_db, database_backup, monkeypatch,
                                                                 tmp_path):
    (tmp_path / "buckets" / "certificates").mkdir(parents=True)
    (tmp_path / "buckets" / "certificates" / "a.pdf").write_bytes(b"%PDF a")
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_STORAGE_SOURCE", f"folder:{tmp_path / 'buckets'}")
    run_dag("bhv360_full_backup")
    execute(backup_env.db, "INSERT INTO app_settings (key, value) VALUES ('added_after_full', 'true')")
    run_dag("bhv360_database_backup")
    newest = list_backups(backup_env.local, BackupType.DATABASE)[-1]

    run, states = run_dag(RESTORE, {"type": "full", "paths": {"database": "latest", "storage": "latest",
                                                                "config": "latest"}})

    assert states == {"validate": "success", "restore": "success"}
    plan = plan_of(run)
    (full_id,) = list_backups(backup_env.local, BackupType.FULL)
    assert plan["full_set"] == full_id
    components = {c["component"]: c for c in plan["components"]}
    assert components["database"]["backup_id"] == newest and components["database"]["applied_newer"]
    assert components["storage"]["backup_id"] == full_id and not components["storage"]["applied_newer"]
    assert tables(restore_db) == tables(backup_env.db)  # includes the row added after the full set
    restored = backup_env.root / "restore" / run.run_id.replace(":", "_").replace("+", "_") / "storage"
    assert (restored / "certificates" / "a.pdf").read_bytes() == b"%PDF a"


SUPABASE_SCHEMA = [
    "CREATE SCHEMA auth", "CREATE SCHEMA storage",
    "CREATE TABLE auth.users (id uuid PRIMARY KEY, email text)",
    "CREATE TABLE auth.schema_migrations (version text PRIMARY KEY)",
    "CREATE TABLE storage.buckets (id text PRIMARY KEY, public boolean)",
    "CREATE TABLE storage.objects (id uuid PRIMARY KEY, bucket_id text REFERENCES storage.buckets, name text)",
    "CREATE TABLE storage.migrations (id int PRIMARY KEY, name text)",
]


def test_supabase_target_follows_the_migration_procedure(backup_env, restore_db):
    execute(backup_env.db, *SUPABASE_SCHEMA,
            "INSERT INTO auth.schema_migrations VALUES ('20240101'), ('20240202')",
            "INSERT INTO storage.migrations VALUES (1, 'create-buckets'), (2, 'add-owner')",
            "INSERT INTO auth.users VALUES ('00000000-0000-0000-0000-000000000001', 'ploegleider@bhv360.nl')",
            "INSERT INTO storage.buckets VALUES ('certificates', false)",
            "INSERT INTO storage.objects VALUES ('00000000-0000-0000-0000-0000000000aa', 'certificates', 'a.pdf')",
            "CREATE TABLE public.drills (id int PRIMARY KEY, user_id uuid REFERENCES auth.users, note text)",
            "INSERT INTO public.drills VALUES (1, '00000000-0000-0000-0000-000000000001', 'ontruiming')")
    # a fresh project: the managed schemas and their migration history exist, the project's data does not
    execute(restore_db, *SUPABASE_SCHEMA,
            "INSERT INTO auth.schema_migrations VALUES ('20240101'), ('20240202'), ('20240303')",
            "INSERT INTO storage.migrations VALUES (1, 'create-buckets'), (2, 'add-owner'), (3, 'newer')")
    run_dag("bhv360_database_backup")

    run, states = run_dag(RESTORE, {"type": "database", "paths": {"database": "latest"}, "supabase_target": True})

    assert states == {"validate": "success", "restore": "success"}
    after = tables(restore_db)
    assert after["public.drills"]["rows"] == 1 and after["auth.users"]["rows"] == 1
    assert after["storage.objects"]["rows"] == 1
    assert after["auth.schema_migrations"]["rows"] == 3 and after["storage.migrations"]["rows"] == 3  # untouched


def test_a_folder_target_outside_the_restore_root_is_refused_and_nothing_is_written(backup_env, monkeypatch, tmp_path):
    from airflow.sdk import conf

    (tmp_path / "buckets" / "certificates").mkdir(parents=True)
    (tmp_path / "buckets" / "certificates" / "evil.py").write_bytes(b"import os  # uploaded by anyone")
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_STORAGE_SOURCE", f"folder:{tmp_path / 'buckets'}")
    run_dag("bhv360_storage_backup")
    dags = Path(conf.get("core", "dags_folder"))
    before = sorted(dags.rglob("*"))
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_RESTORE_FOLDER_ROOT", str(tmp_path / "restores"))
    run, states = run_dag(RESTORE, {"type": "storage", "paths": {"storage": "latest"},
                                    "storage_target": f"folder:{dags / 'restored'}"})
    assert "failed" in states.values()
    assert sorted(dags.rglob("*")) == before
    line = [e for e in backup_env.job_log() if e["type"].startswith("restore")][-1]
    assert line["status"] == "failed" and "outside the restore root" in line["error"]

    run, states = run_dag(RESTORE, {"type": "storage", "paths": {"storage": "latest"},
                                    "storage_target": f"folder:{tmp_path / 'restores' / 'drill'}"})
    assert states == {"validate": "success", "restore": "success"}
    assert (tmp_path / "restores" / "drill" / "certificates" / "evil.py").read_bytes().startswith(b"import os")
