"""A plain restore as a hosted Supabase project's own ``postgres`` role: not a superuser (the cluster's
bootstrap superuser is ``supabase_admin``, as on the platform), no event triggers. The DR runbook's
requests against projects built from the catalog are in ``test_supabase_dr.py``."""

from __future__ import annotations

import psycopg
import pytest

from bhv360_backup.demo.servers import ThrowawayCluster
from bhv360_backup.locations import LocalLocation
from bhv360_backup.postgres.client import PgTarget
from bhv360_backup.producers.database import dump_database
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.restore.plan import build_plan
from bhv360_backup.restore.request import parse_request
from bhv360_backup.restore.run import RestoreTargets, execute_plan
from tests.conftest import BUCKET
from tests.fixtures import supabase_db

pytestmark = pytest.mark.server  # a throwaway cluster of its own: not the fast tier

HOSTED_POSTGRES = """
CREATE ROLE postgres LOGIN NOSUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS;
GRANT SET ON PARAMETER session_replication_role TO postgres;
"""
PLATFORM_EVENT_TRIGGER = """
CREATE FUNCTION extensions.grant_pg_graphql_access() RETURNS event_trigger LANGUAGE plpgsql AS $f$ BEGIN END $f$;
CREATE EVENT TRIGGER issue_pg_graphql_access ON ddl_command_end WHEN TAG IN ('CREATE FUNCTION')
  EXECUTE FUNCTION extensions.grant_pg_graphql_access();
"""


@pytest.fixture(scope="module")
def platform():
    """A cluster whose superuser is supabase_admin, with a hosted project's postgres role."""
    cluster = ThrowawayCluster(superuser="supabase_admin")
    with psycopg.connect(host=cluster.target.host, port=cluster.target.port, user="supabase_admin",
                         dbname="postgres", autocommit=True) as connection:
        connection.execute(HOSTED_POSTGRES)
    yield cluster.target
    cluster.stop()


def database(platform: PgTarget, name: str, owner: str = "postgres") -> PgTarget:
    with supabase_db.connect(platform) as connection:
        connection.execute(f'CREATE DATABASE "{name}" OWNER {owner}')
    return platform.with_dbname(name)


def as_postgres(target: PgTarget) -> PgTarget:
    return PgTarget(target.host, target.port, target.dbname, "postgres")


def restore(locations, target, tmp_path, **options):
    request = parse_request({"type": "database", "paths": {"database": "latest"}, **options},
                            backup_root=str(locations[0].root), bucket=BUCKET)
    plan = build_plan(request, locations, {}, None)
    return execute_plan(plan, request, {location.name: location for location in locations},
                        RestoreTargets(database=target, sink=None, work_dir=tmp_path / "work"))


def test_a_plain_restore_as_hosted_postgres_leaves_the_platforms_event_triggers_out(platform, tmp_path):
    source = database(platform, "source", owner="supabase_admin")
    with supabase_db.connect(source) as connection:
        connection.execute("CREATE SCHEMA extensions")
        connection.execute(PLATFORM_EVENT_TRIGGER)
        connection.execute("CREATE TABLE public.drills (id int PRIMARY KEY, site text); "
                           "INSERT INTO public.drills VALUES (1, 'Oost'), (2, 'West')")
    locations = [LocalLocation(tmp_path / "backups")]
    dump_database(source, BackupWriter(locations, BackupType.DATABASE, "20261204T010000Z"), pg_bin_dir="",
                  dag_id="t", run_id="t")
    target = as_postgres(database(platform, "plain_target"))
    report = restore(locations, target, tmp_path, owner_map={"supabase_admin": "postgres"})
    assert report["database"]["event_triggers_not_restored"] == ["issue_pg_graphql_access"]
    with psycopg.connect(host=target.host, port=target.port, user="postgres", dbname=target.dbname) as connection:
        assert connection.execute("SELECT count(*) FROM public.drills").fetchone()[0] == 2
