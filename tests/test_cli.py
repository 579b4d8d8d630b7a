"""The console command restores without Airflow, configured by environment variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from bhv360_backup.demo.data import create_demo_database
from bhv360_backup.producers.database import dump_database
from bhv360_backup.repository.layout import BackupType, artifact_key
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.restore.validate import database_stats
from tests.conftest import BUCKET
from tests.fixtures import postgres
from tests.fixtures.s3 import ACCESS_KEY, SECRET_KEY

CLI = str(Path(sys.executable).with_name("bhv360-backup"))


@pytest.fixture
def dr_env(tmp_path, pg_database, s3):
    with psycopg.connect(host=pg_database.host, port=pg_database.port, user="postgres", dbname=pg_database.dbname,
                         autocommit=True) as connection:
        create_demo_database(connection, 1)
    from bhv360_backup.locations import LocalLocation, S3Location

    root = tmp_path / "backups"
    writer = BackupWriter([LocalLocation(root), S3Location(s3.client(), BUCKET)], BackupType.DATABASE,
                          "20261126T000000Z")
    dump_database(pg_database, writer, pg_bin_dir="", dag_id="test", run_id="test")
    target = postgres.create_database(pg_database.with_dbname("postgres"), "bhv360_dr")
    settings = tmp_path / "dr.env"
    settings.write_text(f"BHV360_BACKUP_ROOT={root}\nBHV360_S3_ENDPOINT_URL={s3.endpoint}\n"
                        f"AWS_ACCESS_KEY_ID={ACCESS_KEY}\nAWS_SECRET_ACCESS_KEY={SECRET_KEY}\n"
                        "AWS_DEFAULT_REGION=eu-west-1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AIRFLOW"))}
    env.update(PGHOST=target.host, PGPORT=str(target.port), PGUSER="postgres", PGDATABASE=target.dbname)
    yield {"root": root, "target": target, "source": pg_database, "settings": settings, "env": env, "tmp": tmp_path}
    postgres.drop_database(target)


def run(dr_env, *args):
    return subprocess.run([CLI, "--settings", str(dr_env["settings"]), *args], env=dr_env["env"],
                          capture_output=True, text=True, cwd=dr_env["tmp"], timeout=300)


def test_list_and_verify(dr_env):
    listing = run(dr_env, "list")
    assert listing.returncode == 0 and "20261126T000000Z" in listing.stdout
    (row,) = [line for line in listing.stdout.splitlines() if "20261126T000000Z" in line]
    assert row.split()[:2] == ["database", "20261126T000000Z"] and row.count("complete") == 2
    verified = run(dr_env, "verify", "--json")
    assert verified.returncode == 0
    (entry,) = json.loads(verified.stdout)
    assert entry["backup_id"] == "20261126T000000Z" and entry["verified"] is True
    assert entry["locations"] == {"local": "verified", "s3": "verified"}
    assert entry["artifacts"] and all(len(artifact["sha256"]) == 64 for artifact in entry["artifacts"])


def test_restore_falls_back_to_s3_and_matches_the_source(dr_env):
    dump = dr_env["root"] / artifact_key(BackupType.DATABASE, "20261126T000000Z", "database.dump")
    dump.write_bytes(b"damaged")
    assert run(dr_env, "verify").returncode == 1

    result = run(dr_env, "restore", "--type", "database", "--path", "database=latest")

    assert result.returncode == 0, result.stderr
    assert "from s3 (fallback: local:" in result.stdout
    assert database_stats(dr_env["target"]) == database_stats(dr_env["source"])


def test_an_invalid_request_is_refused_by_name(dr_env):
    result = run(dr_env, "restore", "--type", "database", "--path", "database=/etc/passwd")
    assert result.returncode == 2 and "outside the local backup root" in result.stderr
    assert database_stats(dr_env["target"]) == {}


def test_supabase_storage_without_its_url_names_the_missing_variable(dr_env):
    result = run(dr_env, "restore", "--type", "storage", "--path", "storage=latest", "--supabase")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY" in result.stderr


def test_restore_of_an_encrypted_backup_with_the_key_file(dr_env, s3):
    from pyrage import x25519

    from bhv360_backup.locations import LocalLocation, S3Location

    identity = x25519.Identity.generate()  # not the suite's canary key: this one is written to a file
    writer = BackupWriter([LocalLocation(dr_env["root"]), S3Location(s3.client(), BUCKET)], BackupType.DATABASE,
                          "20261127T000000Z", [identity.to_public()])
    dump_database(dr_env["source"], writer, pg_bin_dir="", dag_id="test", run_id="test")

    refused = run(dr_env, "restore", "--type", "database", "--path", "database=20261127T000000Z")
    assert refused.returncode == 2 and "BHV360_AGE_IDENTITY_FILE" in refused.stderr
    assert database_stats(dr_env["target"]) == {}

    key_file = dr_env["tmp"] / "key.txt"
    key_file.write_text(f"# created by age-keygen\n{identity}\n")
    with dr_env["settings"].open("a") as settings:
        settings.write(f"BHV360_AGE_IDENTITY_FILE={key_file}\n")
    result = run(dr_env, "restore", "--type", "database", "--path", "database=20261127T000000Z")
    assert result.returncode == 0, result.stderr
    assert database_stats(dr_env["target"]) == database_stats(dr_env["source"])


def test_drop_slot_switches_incremental_backups_off(logical_db, tmp_path):
    from bhv360_backup.sources.changes import ChangeSource

    source = ChangeSource(logical_db, "bhv360_backup")
    source.ensure_slot()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AIRFLOW"))}
    env.update(PGHOST=logical_db.host, PGPORT=str(logical_db.port), PGUSER="postgres", PGDATABASE=logical_db.dbname)
    result = subprocess.run([CLI, "drop-slot"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "dropped replication slot bhv360_backup" in result.stdout
    assert not source.state().exists
    again = subprocess.run([CLI, "drop-slot"], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "does not exist" in again.stdout
