"""The change source on a real wal_level = logical cluster: what it does when the server gives up its slot."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import psycopg
import pytest

from bhv360_backup import health
from bhv360_backup.errors import ConfigurationError
from bhv360_backup.locations import LocalLocation
from bhv360_backup.repository.catalog import list_backups
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.sources.changes import ChangeSource, schema_fingerprint
from tests.fixtures import postgres
from tests.fixtures.chain import SLOT, capture, dump, run


def invalidate_slots(cluster, target) -> None:
    """Let the server invalidate every slot behind: a tiny max_slot_wal_keep_size, WAL past it, a checkpoint."""
    with psycopg.connect(host=cluster.host, port=cluster.port, user=cluster.user, dbname=cluster.dbname,
                         autocommit=True) as connection:
        connection.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
        connection.execute("SELECT pg_reload_conf()")
        try:
            for _ in range(4):
                run(target, "INSERT INTO notes SELECT g FROM generate_series(1, 2000) g ON CONFLICT DO NOTHING")
                connection.execute("SELECT pg_switch_wal()")
            connection.execute("CHECKPOINT")
        finally:
            connection.execute("ALTER SYSTEM RESET max_slot_wal_keep_size")
            connection.execute("SELECT pg_reload_conf()")


def test_a_slot_the_server_invalidated_is_a_finding_stops_the_capture_and_starts_no_chain(logical_cluster, logical_db,
                                                                                          tmp_path):
    locations = [LocalLocation(tmp_path / "backups")]
    run(logical_db, "CREATE TABLE notes (id int PRIMARY KEY)")
    source = ChangeSource(logical_db, SLOT)
    capture(source, locations)
    invalidate_slots(logical_cluster, logical_db)
    state = source.state()
    assert state.lost, state

    report = health.HealthReport()
    health.check_slot(report, state, 10**12, timedelta(minutes=15))
    assert [row.state for row in report.rows] == ["LOST"]
    assert "invalidated" in report.findings[0].render() and "pg_drop_replication_slot" in report.findings[0].render()

    with pytest.raises(ConfigurationError, match="invalidated.*run the database backup DAG right away"):
        capture(source, locations)
    manifest = dump(logical_db, locations)
    assert manifest.details["chain"] == {"slot": SLOT, "exists": False, "lost": True}
    assert len(list_backups(locations[0], BackupType.INCREMENTAL)) == 1  # the failed capture published nothing


def test_a_sequence_the_capture_role_may_not_read_fails_the_capture_naming_the_grant(logical_db, tmp_path):
    role = f"capturer_{logical_db.dbname[-8:]}"
    run(logical_db, "CREATE TABLE tickets (id serial PRIMARY KEY, note text)", "INSERT INTO tickets (note) VALUES ('a')",
        f"CREATE ROLE {role} LOGIN REPLICATION", f"GRANT SELECT ON tickets TO {role}")
    try:
        source = ChangeSource(replace(logical_db, user=role), SLOT)
        with pytest.raises(ConfigurationError, match=rf"may not read sequence\(s\) public.tickets_id_seq.*"
                                                     rf"GRANT SELECT ON SEQUENCE public.tickets_id_seq TO {role}"):
            capture(source, [LocalLocation(tmp_path / "backups")])
        run(logical_db, f"GRANT SELECT ON SEQUENCE tickets_id_seq TO {role}")
        manifest = capture(source, [LocalLocation(tmp_path / "backups")])
        assert manifest.details["sequences"] == {"public.tickets_id_seq": 1}
    finally:
        postgres.drop_slots(logical_db)
        run(logical_db, f"DROP OWNED BY {role}", f"DROP ROLE {role}")


@pytest.mark.parametrize("change", [
    "CREATE INDEX ON notes (body)",
    "ALTER TABLE notes ADD CONSTRAINT short CHECK (length(body) < 100)",
    "ALTER TABLE notes ALTER COLUMN body SET DEFAULT 'x'",
    "ALTER TABLE notes REPLICA IDENTITY FULL",
    "CREATE OR REPLACE VIEW recent AS SELECT id FROM notes WHERE id > 1",
    "CREATE OR REPLACE FUNCTION tag() RETURNS text LANGUAGE sql AS 'SELECT ''b''::text'",
    "ALTER TABLE notes ADD COLUMN words int GENERATED ALWAYS AS (length(body)) STORED",
])
def test_every_schema_change_a_replay_depends_on_changes_the_fingerprint(pg_database, change):
    run(pg_database, "CREATE TABLE notes (id int PRIMARY KEY, body text)",
        "CREATE VIEW recent AS SELECT id FROM notes WHERE id > 0",
        "CREATE FUNCTION tag() RETURNS text LANGUAGE sql AS 'SELECT ''a''::text'")

    def fingerprint():
        with pg_database.connect() as connection:
            return schema_fingerprint(connection.cursor())

    before = fingerprint()
    assert fingerprint() == before  # the same schema, the same fingerprint
    run(pg_database, change)
    assert fingerprint() != before
