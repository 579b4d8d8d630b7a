"""A restored Supabase project lets exactly the same users see exactly the same data: grants,
policies, RLS, row visibility and sign-in data, into a plain database and into a fresh project."""

from __future__ import annotations

import json

import pytest

from bhv360_backup.postgres import access
from bhv360_backup.repository.catalog import list_backups, read_manifest
from bhv360_backup.repository.database import read_access_model
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.restore.database import check_access
from tests.conftest import connection_json
from tests.fixtures import postgres, supabase_db
from tests.fixtures.airflow import run_dag

RESTORE = "bhv360_restore"
ANNA, DANA = "00000000-0000-0000-0000-0000000000a1", "00000000-0000-0000-0000-0000000000d4"


@pytest.fixture
def project_backup(backup_env):
    supabase_db.make_bhv360_project(backup_env.db)
    run, states = run_dag("bhv360_database_backup")
    assert states["dump"] == "success", states
    (backup_id,) = list_backups(backup_env.local, BackupType.DATABASE)
    return backup_id


@pytest.fixture
def fresh_project(backup_env, monkeypatch):
    target = postgres.create_database(backup_env.db.with_dbname("postgres"), "bhv360_fresh_project")
    supabase_db.make_fresh_project(target)
    monkeypatch.setenv("AIRFLOW_CONN_BHV360_RESTORE_DB", connection_json(target))
    yield target
    postgres.drop_database(target)


def model_of(target):
    with target.connect() as connection, connection.transaction():
        return access.capture(connection.cursor())


def restore_line_of(env, restored_type):
    return [line for line in env.job_log() if line["type"] == f"restore:{restored_type}"][-1]


def restore_line(env):
    return restore_line_of(env, "database")


def assert_same_access(source, target, *tables):
    before, after = model_of(source)["objects"], model_of(target)["objects"]
    for table in tables:
        for attribute in ("acl", "rls", "policies", "columns"):
            assert after[table][attribute] == before[table][attribute], (table, attribute)
    assert supabase_db.visible_rows(target, "public.staff_private", "anon") == "denied"
    assert supabase_db.visible_rows(target, "public.organisations", "anon") == 1
    assert supabase_db.visible_rows(target, "public.organisations", "authenticated", ANNA) == 1
    assert supabase_db.visible_rows(target, "public.organisations", "authenticated", DANA) == 0
    assert supabase_db.visible_rows(target, "public.incidents", "authenticated", ANNA) == 5
    assert supabase_db.can_sign_in(target, "anna@brandweer-oost.nl")


TABLES = ("table public.organisations", "table public.staff_private", "table public.memberships",
          "table public.incidents")


def test_the_backup_records_the_access_model(backup_env, project_backup):
    manifest = read_manifest(backup_env.local, BackupType.DATABASE, project_backup)
    model = read_access_model(backup_env.local, manifest)
    organisations = model["objects"]["table public.organisations"]
    assert organisations["acl"]["anon"] == ["SELECT"] and organisations["rls"] == {"enabled": True, "forced": False}
    assert set(organisations["policies"]) == {"public_organisations", "member_organisations"}
    assert model["objects"]["function public.is_coordinator(org uuid)"]["security_definer"] is True
    assert model["objects"]["table auth.users"]["triggers"]["on_auth_user_created"]["function_schema"] == "public"
    assert model["objects"]["table public.incidents"]["publications"] == ["supabase_realtime"]
    assert model["probes"]["public.organisations as anon"] == 1
    assert model["sign_in"]["users"] == 4 and model["sign_in"]["auth.identities"] == 4
    assert "anon" in manifest.details["access"]["roles"]
    assert {e["name"] for e in manifest.details["access"]["extensions"]} == {"pgcrypto", "uuid-ossp"}


def test_a_plain_restore_keeps_grants_policies_and_what_each_user_sees(backup_env, project_backup, restore_db):
    run, states = run_dag(RESTORE, {"type": "database", "paths": {"database": "latest"}})
    assert states == {"validate": "success", "restore": "success"}
    assert_same_access(backup_env.db, restore_db, *TABLES)
    evidence = restore_line(backup_env)["report"]["database"]["access"]
    assert evidence["checked"] and evidence["differences"] == [] and evidence["probe_differences"] == []
    assert evidence["objects_compared"] > 20 and evidence["probes_compared"] > 10


def test_a_fresh_project_restore_revokes_what_its_default_privileges_added(backup_env, project_backup, fresh_project):
    run, states = run_dag(RESTORE, {"type": "database", "paths": {"database": "latest"}, "supabase_target": True})
    assert states == {"validate": "success", "restore": "success"}, restore_line(backup_env).get("error")
    assert_same_access(backup_env.db, fresh_project, *TABLES)
    after = model_of(fresh_project)["objects"]
    assert "anon" not in after["table public.staff_private"]["acl"]  # the default privileges gave it ALL
    assert "own_certificates" in after["table storage.objects"]["policies"]
    assert "on_auth_user_created" in after["table auth.users"]["triggers"]
    assert after["default privileges of postgres in public on tables"] == \
        model_of(backup_env.db)["objects"]["default privileges of postgres in public on tables"]


def test_a_grant_altered_after_the_restore_fails_the_check_and_is_named(backup_env, project_backup, restore_db):
    run_dag(RESTORE, {"type": "database", "paths": {"database": "latest"}})
    manifest = read_manifest(backup_env.local, BackupType.DATABASE, project_backup)
    model = read_access_model(backup_env.local, manifest)
    with supabase_db.connect(restore_db) as connection:
        connection.execute("GRANT SELECT ON public.staff_private TO anon")
        connection.execute("ALTER TABLE public.organisations DISABLE ROW LEVEL SECURITY")
    check = check_access(restore_db, model, manifest.details["table_rows"], supabase=False,
                         reconcile=False)
    assert any(d.startswith("table public.staff_private: acl") and '"anon": ["SELECT"]' in d
               for d in check.differences), check.differences
    assert any(d.startswith("table public.organisations: rls") for d in check.differences)
    assert any(d.startswith("public.organisations as authenticated:") for d in check.probe_differences)
    print(json.dumps(check.to_dict())[:500])


@pytest.fixture
def new_project_storage(monkeypatch):
    """The Storage API of the fresh project a disaster recovery restores into."""
    from tests.fixtures.supabase_storage import SERVICE_KEY, StorageServer

    server = StorageServer().start()
    monkeypatch.setenv("AIRFLOW_CONN_NEW_PROJECT", json.dumps({"conn_type": "generic", "host": server.url,
                                                               "password": SERVICE_KEY}))
    yield server
    server.stop()


def test_the_dr_runbook_request_restores_into_both_target_shapes(backup_env, storage_api, fresh_project, restore_db,
                                                                 new_project_storage, monkeypatch):
    supabase_db.make_bhv360_project(backup_env.db)
    with supabase_db.connect(backup_env.db) as connection:  # an extension a new project has not enabled
        connection.execute("CREATE EXTENSION pg_trgm; COMMENT ON EXTENSION pg_trgm IS 'title search';"
                           "CREATE INDEX incidents_title_trgm ON public.incidents USING gin (title gin_trgm_ops)")
    storage_api.create_bucket("certificates")
    for name in ("org-1/anna/BHV basis.pdf", "org-1/bram/BHV basis.pdf"):
        storage_api.put("certificates", name, b"%PDF " + name.encode(), "application/pdf")
    run, states = run_dag("bhv360_full_backup")
    assert states["full_set"] == "success", states

    # the README's disaster-recovery request, as it stands, into a fresh project and its storage
    monkeypatch.setenv("AIRFLOW_CONN_NEW_PROJECT_DB", connection_json(fresh_project))
    runbook = {"type": "full", "paths": {"database": "latest", "storage": "latest", "config": "latest"},
               "target_conn_id": "new_project_db", "supabase_target": True, "storage_target": "supabase:new_project"}
    run, states = run_dag(RESTORE, runbook)
    line = restore_line_of(backup_env, "full")
    assert states == {"validate": "success", "restore": "success"}, line.get("error")
    assert_same_access(backup_env.db, fresh_project, *TABLES)
    with supabase_db.connect(fresh_project) as connection:
        assert connection.execute("SELECT to_regclass('public.incidents_title_trgm') IS NOT NULL").fetchone()[0]
    assert line["report"]["database"]["extensions_created"] == ["pg_trgm"]
    assert sorted(key for bucket, key in new_project_storage.objects) == ["org-1/anna/BHV basis.pdf",
                                                                          "org-1/bram/BHV basis.pdf"]
    listings = [path for method, path in new_project_storage.requests if path.startswith("/storage/v1/object/list/")]
    # the empty bucket listed once before the upload, its four folder levels once after it to check; the
    # config step lists nothing again
    assert len(listings) == 5
    checked = line["report"]["storage_objects"]
    assert checked["checked"] and (checked["rows_without_file"], checked["files_without_row"]) == (0, 0)

    # the same backup into a plain empty database, storage into a folder
    monkeypatch.setenv("AIRFLOW_CONN_PLAIN_DB", connection_json(restore_db))
    run, states = run_dag(RESTORE, {**runbook, "supabase_target": False, "target_conn_id": "plain_db",
                                    "storage_target": "folder"})
    assert states == {"validate": "success", "restore": "success"}, restore_line_of(backup_env, "full").get("error")
    assert_same_access(backup_env.db, restore_db, *TABLES)


def test_supabase_target_into_a_plain_database_is_refused_before_writing(backup_env, project_backup, restore_db):
    run, states = run_dag(RESTORE, {"type": "database", "paths": {"database": "latest"}, "supabase_target": True})
    assert states == {"validate": "failed", "restore": "upstream_failed"}
    line = next(e for e in backup_env.job_log() if e["type"].startswith("restore-validation"))
    assert "it is not a Supabase project" in line["error"]
    with supabase_db.connect(restore_db) as connection:
        assert connection.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0
