"""A restored database gives every role exactly the access it had, in both directions: owners (a view
runs as its owner), and what only the target has (default privileges a fresh target grants)."""

from __future__ import annotations

import psycopg
import pytest

from bhv360_backup.errors import BackupError
from bhv360_backup.locations import LocalLocation
from bhv360_backup.postgres import access
from bhv360_backup.repository.catalog import read_manifest
from bhv360_backup.repository.database import read_access_model
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.restore.database import check_access
from bhv360_backup.restore.run import RestoreMismatch
from tests.fixtures import postgres, supabase_db
from tests.fixtures.chain import dump, restore_into, run

VIEW_OWNER = "bhv360_test_view_owner"
OWNED_VIEW = f"""
CREATE TABLE notes (author text, body text);
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY alice_only ON notes USING (author = 'alice');
INSERT INTO notes VALUES ('alice', 'a'), ('bob', 'b');
GRANT SELECT ON notes TO {VIEW_OWNER};
GRANT CREATE ON SCHEMA public TO {VIEW_OWNER};
CREATE VIEW notes_view AS SELECT author FROM notes;
ALTER VIEW notes_view OWNER TO {VIEW_OWNER};
GRANT SELECT ON notes_view TO anon;
CREATE FUNCTION whoami() RETURNS text LANGUAGE sql SECURITY DEFINER AS 'SELECT current_user::text';
ALTER FUNCTION whoami() OWNER TO {VIEW_OWNER};
"""


@pytest.fixture
def source(pg_server):
    target = postgres.create_database(pg_server, "bhv360_access_source")
    supabase_db.ensure_reserved_roles(target)
    run(target, f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{VIEW_OWNER}') THEN "
                f"CREATE ROLE {VIEW_OWNER} NOLOGIN; END IF; END $$")
    yield target
    postgres.drop_database(target)


@pytest.fixture
def restored(pg_server):
    target = postgres.create_database(pg_server, "bhv360_access_target")
    yield target
    postgres.drop_database(target)


def as_anon(target, query):
    with psycopg.connect(host=target.host, port=target.port, user=target.user, dbname=target.dbname) as connection:
        connection.execute("SET ROLE anon")
        return connection.execute(query).fetchall()


def test_views_and_security_definer_functions_get_their_recorded_owner_back(source, restored, tmp_path):
    run(source, OWNED_VIEW)
    locations = [LocalLocation(tmp_path / "backups")]
    dump(source, locations)
    assert as_anon(source, "SELECT author FROM notes_view") == [("alice",)]

    plan, report = restore_into(restored, locations, tmp_path)  # no_owner, the default: pg_restore --no-owner

    assert as_anon(restored, "SELECT author FROM notes_view") == [("alice",)]
    assert as_anon(restored, "SELECT whoami()") == [(VIEW_OWNER,)]
    probes = report["database"]["access"]
    assert not probes["probe_differences"] and probes["probes_compared"] >= 1


def test_an_owner_missing_in_the_target_is_refused_before_writing_unless_mapped(source, pg_server, tmp_path):
    """A SECURITY DEFINER function runs as its owner: never silently the restoring superuser."""
    gone = "bhv360_test_gone_owner"
    locations = [LocalLocation(tmp_path / "backups")]
    run(source, f"CREATE ROLE {gone} NOLOGIN")
    try:
        run(source, "CREATE FUNCTION whoami() RETURNS text LANGUAGE sql SECURITY DEFINER AS 'SELECT current_user::text'",
            f"ALTER FUNCTION whoami() OWNER TO {gone}")
        dump(source, locations)
    finally:
        run(source, f"DROP OWNED BY {gone}", f"DROP ROLE {gone}")  # roles are the cluster's: gone for the target too
    target = postgres.create_database(pg_server, "bhv360_access_target")
    try:
        with pytest.raises(BackupError, match=f"owner role.*{gone}.*missing in the target.*owner_map"):
            restore_into(target, locations, tmp_path)
        assert run(target, "SELECT 1") and not _tables(target)  # nothing was written
        _, report = restore_into(target, locations, tmp_path, owner_map={gone: VIEW_OWNER})
        assert report["database"]["access"]["owners_mapped"] == {gone: VIEW_OWNER}
        assert as_anon(target, "SELECT whoami()") == [(VIEW_OWNER,)]
    finally:
        postgres.drop_database(target)


def _tables(target):
    with psycopg.connect(host=target.host, port=target.port, user=target.user, dbname=target.dbname) as connection:
        return connection.execute("SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace").fetchall()


def test_default_privileges_only_the_target_has_are_a_difference_and_are_revoked(source, restored, tmp_path):
    run(source, "CREATE TABLE staff (id int PRIMARY KEY)")  # hardened: no default privileges at all
    locations = [LocalLocation(tmp_path / "backups")]
    manifest = dump(source, locations)
    run(restored, "ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON TABLES TO anon")
    model = read_access_model(locations[0], read_manifest(locations[0], BackupType.DATABASE, manifest.backup_id))

    unchecked = check_access(restored, model, {}, supabase=False, reconcile=False)
    assert [d for d in unchecked.differences if d.startswith("default privileges of postgres in public on tables: "
                                                             "in the target only")], unchecked.differences

    restore_into(restored, locations, tmp_path)
    assert run(restored, "SELECT 1")
    with psycopg.connect(host=restored.host, port=restored.port, user=restored.user,
                         dbname=restored.dbname) as connection:
        assert connection.execute("SELECT count(*) FROM pg_default_acl").fetchone()[0] == 0
        assert access.capture(connection.cursor())["objects"]["table public.staff"]["acl"] == {
            "postgres": ["DELETE", "INSERT", "REFERENCES", "SELECT", "TRIGGER", "TRUNCATE", "UPDATE"]}


def test_a_difference_only_the_target_has_fails_the_restore(source, restored, tmp_path):
    run(source, "CREATE TABLE staff (id int PRIMARY KEY)")
    locations = [LocalLocation(tmp_path / "backups")]
    dump(source, locations)
    run(restored, "CREATE TABLE leftover (id int)")  # not the backup's: a restore never drops what it did not make
    with pytest.raises(RestoreMismatch, match="table public.leftover: in the target only"):
        restore_into(restored, locations, tmp_path)


def test_a_routine_with_several_arguments_is_in_its_own_schema():
    """A key holds the arguments, spaces and all (once read as the schema ``text)``: a platform function
    counted as the project's, and its owner asked for)."""
    assert access.schema_of("function vault.create_secret(new_secret text, new_name text)") == "vault"
    assert access.schema_of("materialized view public.beat_count") == "public"
    assert access.schema_of("schema storage") == "storage"
    assert access.schema_of("default privileges of postgres in public on tables") is None
