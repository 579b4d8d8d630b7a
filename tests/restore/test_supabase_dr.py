"""The DR runbook's requests, run as a hosted project's own ``postgres`` (not a superuser) against projects
built from the catalog facts of a fresh Supabase project: the backup, the ``supabase_target`` restore, a
point-in-time restore over sign-ups and uploads, and the plain mode into an empty database."""

from __future__ import annotations

import subprocess
from dataclasses import replace

import psycopg
import pytest

from bhv360_backup.demo.servers import ThrowawayCluster
from bhv360_backup.errors import BackupError
from bhv360_backup.locations import LocalLocation
from bhv360_backup.postgres import access
from bhv360_backup.repository.catalog import list_backups
from bhv360_backup.sources.changes import ChangeSource
from tests.fixtures import supabase_catalog, supabase_db
from tests.fixtures.chain import SLOT, capture, dump, restore_into, run, state

pytestmark = pytest.mark.server  # a throwaway cluster of its own

APP_DATA_SQL = """
INSERT INTO auth.identities (provider_id, user_id, identity_data, provider)
  SELECT id::text, id, jsonb_build_object('email', email, 'sub', id::text), 'email' FROM auth.users;
INSERT INTO auth.refresh_tokens (token, user_id, revoked) SELECT md5(id::text), id::text, false FROM auth.users;
INSERT INTO public.memberships VALUES
  ('00000000-0000-0000-0000-0000000000a1', '10000000-0000-0000-0000-000000000001', 'coordinator'),
  ('00000000-0000-0000-0000-0000000000c3', '10000000-0000-0000-0000-000000000002', 'coordinator');
INSERT INTO public.incidents (org_id, title) SELECT '10000000-0000-0000-0000-000000000001', 'ontruiming ' || g
  FROM generate_series(1, 5) g;
INSERT INTO storage.buckets (id, name) VALUES ('certificates', 'certificates');
INSERT INTO storage.objects (bucket_id, name, owner) VALUES
  ('certificates', 'org-1/anna/BHV basis.pdf', '00000000-0000-0000-0000-0000000000a1');
"""
TABLES = ["auth.users", "auth.identities", "auth.refresh_tokens", "public.profiles", "public.incidents",
          "public.memberships", "storage.buckets", "storage.objects"]
SIGN_UP = """
INSERT INTO auth.users (id, email, encrypted_password, aud, role, email_confirmed_at)
  VALUES ('{id}', '{email}', extensions.crypt('pw', extensions.gen_salt('bf', 4)), 'authenticated', 'authenticated', now());
INSERT INTO auth.identities (provider_id, user_id, identity_data, provider)
  VALUES ('{id}', '{id}', jsonb_build_object('email', '{email}', 'sub', '{id}'), 'email');
"""


@pytest.fixture(scope="module")
def platform():
    cluster = ThrowawayCluster(superuser=supabase_catalog.BOOTSTRAP,
                               settings={"wal_level": "logical", "max_replication_slots": "20"})
    with psycopg.connect(host=cluster.target.host, port=cluster.target.port, user=supabase_catalog.BOOTSTRAP,
                         dbname="postgres", autocommit=True) as connection:
        for statement in supabase_catalog.roles_sql():
            connection.execute(statement)
    yield cluster.target
    cluster.stop()


_count = iter(range(1000))


def new_project(platform, *, fresh: bool = True):
    """A project's database owned by ``postgres``, with the platform's set-up (``fresh``), reached as
    ``postgres``."""
    name = f"project_{next(_count)}"
    with psycopg.connect(host=platform.host, port=platform.port, user=supabase_catalog.BOOTSTRAP,
                         dbname="postgres", autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name} OWNER postgres")
    if fresh:
        with psycopg.connect(host=platform.host, port=platform.port, user=supabase_catalog.BOOTSTRAP, dbname=name,
                             autocommit=True) as connection:
            for statement in supabase_catalog.project_sql():
                connection.execute(statement)
    return replace(platform.with_dbname(name), user="postgres")


@pytest.fixture(scope="module")
def source(platform):
    """BHV360's project, made by its migrations as postgres."""
    target = new_project(platform)
    values = ", ".join(f"('{user_id}', '{email}')" for user_id, email in supabase_db.USERS.items())
    run(target, supabase_db.BHV360_SQL)
    with psycopg.connect(host=target.host, port=target.port, user="postgres", dbname=target.dbname,
                         autocommit=True) as connection:
        connection.execute(supabase_db.USERS_SQL.format(users=values), [supabase_db.KNOWN_PASSWORD])
        connection.execute(APP_DATA_SQL)
    return target


@pytest.fixture
def no_connection_options(monkeypatch):
    """A hosted project refuses reserved parameters as connection options: none may be sent."""
    real_run, real_popen = subprocess.run, subprocess.Popen

    def checked(kind):
        def call(*args, **kwargs):
            assert "session_replication_role" not in (kwargs.get("env") or {}).get("PGOPTIONS", "")
            return kind(*args, **kwargs)
        return call

    monkeypatch.setattr(subprocess, "run", checked(real_run))
    monkeypatch.setattr(subprocess, "Popen", checked(real_popen))


def model(target):
    with target.connect() as connection, connection.transaction():
        return access.capture(connection.cursor())["objects"]


def test_the_runbooks_database_restore_into_a_new_project_as_postgres(platform, source, tmp_path, no_connection_options):
    locations = [LocalLocation(tmp_path / "backups")]
    dump(source, locations)  # as postgres
    target = new_project(platform)

    plan, report = restore_into(target, locations, tmp_path, supabase_target=True)

    assert state(target, TABLES) == state(source, TABLES)
    before, after = model(source), model(target)
    assert after["table storage.objects"]["policies"] == before["table storage.objects"]["policies"]
    assert "on_auth_user_created" in after["table auth.users"]["triggers"]
    for table in ("table public.organisations", "table public.staff_private", "table public.memberships"):
        assert after[table]["acl"] == before[table]["acl"], table
    assert supabase_db.can_sign_in(target, "anna@brandweer-oost.nl")
    assert sorted(report["database"]["event_triggers_not_restored"]) == sorted(
        trigger["name"] for trigger in supabase_catalog.CATALOG["event_triggers"])


def test_a_point_in_time_restore_over_sign_ups_and_uploads_as_postgres(platform, tmp_path, storage_api,
                                                                      no_connection_options):
    from bhv360_backup.sources.storage import SupabaseStorageSource
    from tests.fixtures.supabase_storage import SERVICE_KEY

    source = new_project(platform)
    run(source, supabase_db.BHV360_SQL)
    locations = [LocalLocation(tmp_path / "backups")]
    changes = ChangeSource(source, SLOT)
    storage = lambda: SupabaseStorageSource(storage_api.url, SERVICE_KEY)  # noqa: E731
    capture(changes, locations, storage=storage)
    dump(source, locations)
    storage_api.create_bucket("certificates")
    storage_api.put("certificates", "org-1/eva/BHV.pdf", b"%PDF eva", "application/pdf")
    object_id = storage_api.objects[("certificates", "org-1/eva/BHV.pdf")]["id"]
    run(source, *SIGN_UP.format(id="00000000-0000-0000-0000-0000000000e5", email="eva@brandweer-oost.nl").split(";\n")[:2],
        "INSERT INTO storage.buckets (id, name) VALUES ('certificates', 'certificates')",
        "INSERT INTO storage.objects (id, bucket_id, name, owner) VALUES ('" + object_id + "', 'certificates', "
        "'org-1/eva/BHV.pdf', '00000000-0000-0000-0000-0000000000e5')",
        "UPDATE auth.users SET last_sign_in_at = now() WHERE email = 'eva@brandweer-oost.nl'")
    capture(changes, locations, storage=storage)
    target = new_project(platform)
    try:
        plan, report = restore_into(target, locations, tmp_path, supabase_target=True)
        assert report["database"]["point_in_time"]["transactions"] >= 3
        assert state(target, TABLES) == state(source, TABLES)  # the profile trigger did not fire a second time
        assert supabase_db.can_sign_in(target, "eva@brandweer-oost.nl", "pw")
    finally:
        with psycopg.connect(host=source.host, port=source.port, user="postgres", dbname=source.dbname,
                             autocommit=True) as connection:
            connection.execute("SELECT pg_drop_replication_slot(%s)", [SLOT])


def test_the_plain_mode_of_a_whole_project_into_an_empty_database_as_postgres_is_refused_naming_why(platform, source, tmp_path, no_connection_options):
    locations = [LocalLocation(tmp_path / "backups")]
    dump(source, locations)
    target = new_project(platform, fresh=False)
    with pytest.raises(BackupError, match=r"postgres may not give objects to role\(s\) pgbouncer, supabase_admin: "
                                          r"grant them to it first .* or restore as a superuser"):
        restore_into(target, locations, tmp_path)  # the platform's objects are its roles': refused before writing
    with target.connect() as connection:
        assert connection.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                                  ).fetchone()[0] == 0


def test_a_right_the_restore_needs_and_lacks_is_named_before_the_first_write(platform, source, tmp_path):
    locations = [LocalLocation(tmp_path / "backups")]
    dump(source, locations)
    target = new_project(platform)
    with psycopg.connect(host=platform.host, port=platform.port, user=supabase_catalog.BOOTSTRAP, dbname="postgres",
                         autocommit=True) as connection:
        connection.execute("REVOKE SET ON PARAMETER session_replication_role FROM postgres")
        try:
            with pytest.raises(BackupError, match="postgres may not SET session_replication_role.*supautils"):
                restore_into(target, locations, tmp_path, supabase_target=True)
        finally:
            connection.execute("GRANT SET ON PARAMETER session_replication_role TO postgres")
    with target.connect() as connection:
        assert connection.execute("SELECT to_regclass('public.profiles')").fetchone()[0] is None  # nothing written


def test_expressions_are_compared_with_one_fixed_search_path(platform, source, tmp_path):
    """The backup read as supabase_admin (whose search_path has auth: a policy reads ``uid()``), the target
    checked as postgres (``auth.uid()``): the same policy, no difference."""
    locations = [LocalLocation(tmp_path / "backups")]
    dump(replace(source, user=supabase_catalog.BOOTSTRAP), locations)
    target = new_project(platform)
    plan, report = restore_into(target, locations, tmp_path, supabase_target=True)
    assert report["database"]["access"]["differences"] == []


def test_a_restore_that_fails_after_its_first_write_marks_the_target_and_says_what_was_written(
        platform, source, tmp_path, monkeypatch):
    from bhv360_backup.restore import run as restore_run

    locations = [LocalLocation(tmp_path / "backups")]
    dump(source, locations)
    target = new_project(platform)

    def broken_check(*args, **kwargs):
        raise BackupError("the access check could not read the target (injected)")

    monkeypatch.setattr(restore_run, "check_access", broken_check)
    with pytest.raises(BackupError, match=r"\(written: schema and data; not written: extensions, roles, access model"):
        restore_into(target, locations, tmp_path, supabase_target=True)
    with target.connect() as connection:
        comment = connection.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                                     "WHERE datname = current_database()").fetchone()[0]
    assert "FAILED" in comment and "INCOMPLETE: do not switch over" in comment and "written: schema and data" in comment

    monkeypatch.undo()
    target = new_project(platform)
    restore_into(target, locations, tmp_path, supabase_target=True)
    with target.connect() as connection:
        comment = connection.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                                     "WHERE datname = current_database()").fetchone()[0]
    assert comment.startswith("bhv360-backup: restored from database backup") and "checked equal" in comment


def test_vault_secrets_survive_into_a_project_with_its_own_root_key(platform, tmp_path, no_connection_options):
    from tests.conftest import AGE_IDENTITY

    source = new_project(platform)
    run(source, "SELECT vault.create_secret('re_live_canary_9f2e', 'resend_api_key', 'mail for drills')")
    encrypted = [LocalLocation(tmp_path / "encrypted")]
    dump(source, encrypted, (AGE_IDENTITY.to_public(),))
    target = new_project(platform)
    plan, report = restore_into(target, encrypted, tmp_path, (AGE_IDENTITY,), supabase_target=True)
    assert report["database"]["vault"] == {"created": ["resend_api_key"], "present": []}
    with target.connect() as connection:
        assert connection.execute("SELECT decrypted_secret, description FROM vault.decrypted_secrets "
                                  "WHERE name = 'resend_api_key'").fetchone() == ("re_live_canary_9f2e", "mail for drills")

    plain = [LocalLocation(tmp_path / "plain")]
    dump(source, plain)  # without encryption the value is not kept: a manual step names the secret
    plan, report = restore_into(new_project(platform), plain, tmp_path, supabase_target=True)
    assert report["database"]["manual_steps"] == ["vault secret resend_api_key: create it by hand (backups were not "
                                                  "encrypted, so its value was not kept)"]


def test_a_project_that_already_has_the_backups_tables_is_refused_before_writing(platform, source, tmp_path):
    locations = [LocalLocation(tmp_path / "backups")]
    dump(source, locations)
    target = new_project(platform)
    run(target, "CREATE TABLE public.incidents (id int)")  # not a new project
    with pytest.raises(BackupError, match=r"already has table\(s\) public.incidents that the backup restores: "
                                          r"restore into a new project"):
        restore_into(target, locations, tmp_path, supabase_target=True)
    with target.connect() as connection:
        assert connection.execute("SELECT to_regclass('public.profiles')").fetchone()[0] is None


def test_the_readmes_disaster_recovery_request_through_airflow_as_postgres(platform, backup_env, storage_api,
                                                                           management_api, monkeypatch):
    """The runbook's full request, end to end: the project (built from the catalog) backed up by the full
    DAG as its postgres, then restored by the restore DAG into a new project as postgres, its files into
    the new project's Storage, its configuration and functions into the new project's settings."""
    import json

    from bhv360_backup.demo.management_api import FUNCTION_BODY, TARGET_REF
    from bhv360_backup.repository.layout import BackupType
    from tests.conftest import connection_json
    from tests.fixtures.airflow import run_dag
    from tests.fixtures.supabase_storage import SERVICE_KEY, StorageServer

    source = new_project(platform)
    run(source, supabase_db.BHV360_SQL)
    values = ", ".join(f"('{user_id}', '{email}')" for user_id, email in supabase_db.USERS.items())
    with psycopg.connect(host=source.host, port=source.port, user="postgres", dbname=source.dbname,
                         autocommit=True) as connection:
        connection.execute(supabase_db.USERS_SQL.format(users=values), [supabase_db.KNOWN_PASSWORD])
        connection.execute(APP_DATA_SQL)
    storage_api.create_bucket("certificates")
    monkeypatch.setenv("AIRFLOW_CONN_BHV360_DB", connection_json(source, password=None))
    run_dag("bhv360_full_backup")
    assert list_backups(backup_env.local, BackupType.FULL), [e.get("error") for e in backup_env.job_log()]

    target = new_project(platform)
    new_storage = StorageServer().start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_NEW_PROJECT_DB", connection_json(target, password=None))
        monkeypatch.setenv("AIRFLOW_CONN_NEW_PROJECT", json.dumps({"conn_type": "generic", "host": new_storage.url,
                                                                   "password": SERVICE_KEY}))
        management_api.add_project(TARGET_REF)
        monkeypatch.setenv("AIRFLOW_CONN_NEW_PROJECT_MANAGEMENT", management_api.connection_json(TARGET_REF))
        runbook = {"type": "full", "paths": {"database": "latest", "storage": "latest", "config": "latest"},
                   "target_conn_id": "new_project_db", "supabase_target": True, "storage_target": "supabase:new_project",
                   "target_project_conn_id": "new_project_management"}
        _, states = run_dag("bhv360_restore", runbook)
        line = [e for e in backup_env.job_log() if e["type"] == "restore:full"][-1]
        assert states == {"validate": "success", "restore": "success"}, line.get("error")
        assert state(target, TABLES) == state(source, TABLES)
        assert supabase_db.can_sign_in(target, "anna@brandweer-oost.nl")
        assert "certificates" in new_storage.buckets
        assert management_api.projects[TARGET_REF]["auth"]["site_url"] == "https://app.bhv360.nl"
        assert management_api.projects[TARGET_REF]["functions"]["notify-team"]["body"] == FUNCTION_BODY
        assert line["report"]["config"]["project"]["differences_after"] == {}
    finally:
        new_storage.stop()
