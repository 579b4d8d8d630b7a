"""``make demo``: the backups, a point-in-time restore and the inventory, as a short story.

Runs the DAGs through Airflow (``dag.test()``) on embedded defaults: where ``bhv360_db`` is not
configured, a generated BHV360-like database on a throwaway PostgreSQL cluster with logical decoding
(incremental backups need it); where ``bhv360_s3`` is not configured, SeaweedFS's S3 server on 127.0.0.1 (on disk);
a generated bucket tree as the storage source; where ``bhv360_supabase_management`` is not configured, the
Management API stand-in with a seeded project; encryption on with a demo age key. Airflow's own records
go to ``.demo/airflow.log``; the terminal shows one line per step. Everything lands under ``.demo/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bhv360_backup.repository.catalog import read_manifest

DEMO_DIR = Path(".demo").resolve()
DEMO_DB = "bhv360_demo"
DEMO_MB = 30
AIRFLOW_LOG = DEMO_DIR / "airflow.log"
_terminal = sys.stdout


def say(text: str = "") -> None:
    print(text, file=_terminal, flush=True)


@contextlib.contextmanager
def airflow_output_to_log() -> Iterator[None]:
    """Send everything written to stdout and stderr (Airflow's records, child processes) to the log file,
    at the file-descriptor level, while the story keeps the terminal."""
    global _terminal
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    _terminal = os.fdopen(os.dup(saved_out), "w", buffering=1)
    log = os.open(AIRFLOW_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for descriptor in (log, saved_out, saved_err):
            os.close(descriptor)
        _terminal.close()
        _terminal = sys.stdout


def configure(repo: Path) -> None:
    os.environ.setdefault("AIRFLOW_HOME", str(DEMO_DIR / "airflow"))
    os.environ.update(
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(repo / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(repo / "plugins"),
    )
    os.environ.setdefault("AIRFLOW_VAR_BHV360_BACKUP_ROOT", str(DEMO_DIR / "backups"))
    os.environ.setdefault("AIRFLOW_VAR_BHV360_LOG_DIR", str(DEMO_DIR / "logs"))


def source_database(stack: contextlib.ExitStack):
    from bhv360_backup.demo.data import create_demo_database, organisations_for_mb
    from bhv360_backup.demo.servers import ThrowawayCluster

    cluster = ThrowawayCluster(settings={"wal_level": "logical"})  # in the system temp folder: its server user reaches it
    stack.callback(cluster.stop)
    with cluster.target.connect(autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {DEMO_DB}")
    target = cluster.target.with_dbname(DEMO_DB)
    with target.connect(autocommit=True) as connection:
        create_demo_database(connection, organisations_for_mb(DEMO_MB))
        size = connection.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
    os.environ["AIRFLOW_CONN_BHV360_DB"] = json.dumps(
        {"conn_type": "postgres", "host": target.host, "port": target.port, "login": target.user, "schema": DEMO_DB})
    os.environ["AIRFLOW_CONN_BHV360_RESTORE_DB"] = json.dumps(
        {"conn_type": "postgres", "host": target.host, "port": target.port, "login": target.user,
         "schema": "bhv360_restored"})
    with cluster.target.connect(autocommit=True) as connection:
        connection.execute("CREATE DATABASE bhv360_restored")
    os.environ.setdefault("AIRFLOW_VAR_BHV360_CONFIG_TABLES", "public.app_settings")
    say(f"  source: generated BHV360 database {DEMO_DB} ({size}) on a throwaway PostgreSQL with logical decoding")
    return target


def s3_stand_in(stack: contextlib.ExitStack) -> None:
    from bhv360_backup.demo.servers import SeaweedS3

    s3 = SeaweedS3(folder=DEMO_DIR / "s3").start()
    stack.callback(s3.stop)
    bucket = os.environ.get("AIRFLOW_VAR_BHV360_S3_BUCKET", "bhv360-backups")
    if bucket not in {b["Name"] for b in s3.client().list_buckets().get("Buckets", [])}:
        s3.create_bucket(bucket)
    os.environ["AIRFLOW_CONN_BHV360_S3"] = s3.connection_json()
    say(f"  cloud: SeaweedFS's S3 server at {s3.endpoint}, bucket {bucket} (on disk in {DEMO_DIR / 's3'}: the "
        "cloud copies outlive a restart of the demo)")


def management_stand_in(stack: contextlib.ExitStack):
    from bhv360_backup.demo.management_api import SOURCE_REF, ManagementStandIn, seed

    api = ManagementStandIn().start()
    stack.callback(api.stop)
    seed(api, SOURCE_REF)
    os.environ["AIRFLOW_CONN_BHV360_SUPABASE_MANAGEMENT"] = api.connection_json(SOURCE_REF)
    say(f"  project: Supabase project {SOURCE_REF} on a local stand-in of the Management API at {api.url} "
        "(held to the published OpenAPI description)")
    return api


def bucket_tree() -> None:
    from bhv360_backup.demo.buckets import create_demo_buckets

    folder = DEMO_DIR / "buckets"
    count = create_demo_buckets(folder)
    os.environ["AIRFLOW_VAR_BHV360_STORAGE_SOURCE"] = f"folder:{folder}"
    say(f"  storage: a generated bucket tree of {count} files in {folder}")


def age_key() -> None:
    from pyrage import x25519

    key_file = DEMO_DIR / "age-key.txt"
    if not key_file.exists():
        DEMO_DIR.mkdir(exist_ok=True)
        identity = x25519.Identity.generate()
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(f"# demo key of make demo\n# public key: {identity.to_public()}\n{identity}\n")
    identity = x25519.Identity.from_str(key_file.read_text().splitlines()[-1])
    os.environ["AIRFLOW_VAR_BHV360_AGE_RECIPIENTS"] = str(identity.to_public())
    os.environ["AIRFLOW_CONN_BHV360_AGE_IDENTITY"] = json.dumps({"conn_type": "generic", "password": str(identity)})
    say(f"  encryption: age to a demo key (age -d -i {key_file.relative_to(Path.cwd()) if key_file.is_relative_to(Path.cwd()) else key_file} FILE)")


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


class Story:
    """Runs DAGs quietly and tells what each did in one line."""

    def __init__(self, bag, log_dir: Path) -> None:
        from bhv360_backup.demo.dag_runs import FreshParams

        self.dags = FreshParams(bag.dags)
        self.log_dir = log_dir
        self.failed: list[str] = []

    def run(self, dag_id: str, conf: dict[str, Any] | None = None) -> tuple[bool, float]:
        from bhv360_backup import joblog

        started = time.monotonic()
        seen = len(joblog.read(self.log_dir))
        with airflow_output_to_log():
            run = self.dags.dag(dag_id).test(run_conf=conf)
        seconds = time.monotonic() - started
        ok = getattr(run.state, "value", run.state) == "success"
        if not ok:
            self.failed.append(dag_id)
            errors = [line.get("error") for line in joblog.read(self.log_dir)[seen:] if line.get("error")]
            say(f"{dag_id} FAILED ({seconds:.1f} s): {errors[0] if errors else 'see ' + str(AIRFLOW_LOG)}")
        self.new_lines = joblog.read(self.log_dir)[seen:]
        return ok, seconds

    def line(self, job_type: str) -> dict[str, Any]:
        return next((line for line in reversed(self.new_lines) if line.get("type") == job_type), {})


def _tell_backup(story: Story, dag_id: str, backup_type: str, locations) -> None:
    from bhv360_backup.repository.layout import BackupType

    ok, seconds = story.run(dag_id)
    if not ok:
        return
    line = story.line(backup_type)
    manifest = read_manifest(locations[0], BackupType(backup_type), line["backup_id"])
    where = " and ".join(line["locations"])
    if backup_type == "database":
        from bhv360_backup.repository.database import dump_artifact

        dump = manifest.artifact(dump_artifact(manifest))
        what = (f"{sum(manifest.details['table_rows'].values()):,} rows, {_mb(dump.plain_size or dump.size)} dump "
                f"stored as {_mb(dump.size)}")
    elif backup_type == "storage":
        stats = line["stats"]
        what = (f"{stats['seen']} objects, {stats['downloaded']} copied and {stats['reused']} reused, "
                f"{_mb(stats['bytes_transferred'])} transferred")
    elif backup_type == "config":
        what = f"config.json of {_mb(manifest.size)}"
    else:
        components = ", ".join(f"{name} {c['backup_id']}" for name, c in manifest.details["components"].items())
        what = f"set of {components}"
    say(f"{backup_type} backup {line['backup_id']}: {what}; verified in {where} ({seconds:.1f} s)")


def _tell_incremental(story: Story) -> dict[str, Any] | None:
    ok, seconds = story.run("bhv360_incremental_backup")
    if not ok:
        return None
    line = story.line("incremental")
    created = "; capture slot created: the database backup it triggers starts the chain" if line.get("slot_created") else ""
    say(f"incremental backup {line['backup_id']}: {line['transactions']} transaction(s), {line['changes']} "
        f"change(s) captured up to {line['captured_until'][11:23]} UTC{created} ({seconds:.1f} s)")
    return line


def _point_in_time_part(story: Story, source, locations) -> None:
    """Changes after the dump, captured, and a restore to a moment between two of them."""
    def change(statement: str):
        with source.connect(autocommit=True) as connection:
            connection.execute(statement)
            return connection.execute("SELECT clock_timestamp()").fetchone()[0]

    say("-- point-in-time recovery --")
    _tell_incremental(story)  # creates the slot: the chain starts at the next dump
    _tell_backup(story, "bhv360_database_backup", "database", locations)
    change("UPDATE app_settings SET value = '45' WHERE key = 'drill_reminder_days'")
    change("""INSERT INTO app_settings (key, value) VALUES ('drill_due', '"2026-12-01"')""")
    between = change("SELECT 1")
    time.sleep(0.05)
    change("DELETE FROM app_settings WHERE key = 'drill_due'")
    change("INSERT INTO app_settings (key, value) VALUES ('incident_mode', 'true')")
    say("changes after the dump: a drill planned, then cancelled; incident mode switched on")
    _tell_incremental(story)
    ok, seconds = story.run("bhv360_restore", {"type": "database", "paths": {"database": "latest"},
                                               "point_in_time": between.isoformat()})
    if not ok:
        return
    report = story.line("restore:database").get("report", {}).get("database", {})
    replayed = report.get("point_in_time", {})
    target = json.loads(os.environ["AIRFLOW_CONN_BHV360_RESTORE_DB"])
    from bhv360_backup.postgres.client import PgTarget

    restored = PgTarget(target["host"], target["port"], target["schema"], target["login"])
    with restored.connect() as connection:
        keys = [row[0] for row in connection.execute(
            "SELECT key FROM app_settings WHERE key IN ('drill_due', 'incident_mode') ORDER BY key").fetchall()]
    say(f"restore to {between.isoformat(timespec='milliseconds')} ({seconds:.1f} s): the dump, then "
        f"{replayed.get('transactions')} transaction(s) from {replayed.get('segments')} segment(s); the restored "
        f"database has {', '.join(keys) or 'neither'}: the planned drill, not yet incident mode")


def _project_part(story: Story, api) -> None:
    """A change made in the dashboard shows up in the next config backup; a dry run plans the project's
    configuration into a new, empty project."""
    from bhv360_backup.demo.management_api import SOURCE_REF, TARGET_REF

    say("-- the Supabase project's configuration --")
    api.projects[SOURCE_REF]["auth"].update(disable_signup=False, jwt_exp=7200,
                                            external_google_secret="rotated-in-the-dashboard")
    say("changed in the dashboard: sign-ups opened, JWT expiry 7200 s, the Google client secret rotated")
    ok, seconds = story.run("bhv360_config_backup")
    if not ok:
        return
    line = story.line("config")
    say(f"config backup {line['backup_id']} ({seconds:.1f} s), changed since the previous one:")
    for field, change in line.get("project_changes", {}).items():
        say(f"  {field}: {change}")
    api.add_project(TARGET_REF)
    os.environ["AIRFLOW_CONN_BHV360_NEW_PROJECT"] = api.connection_json(TARGET_REF)
    ok, seconds = story.run("bhv360_restore", {"type": "config", "paths": {"config": "latest"},
                                               "target_project_conn_id": "bhv360_new_project", "dry_run": True})
    if not ok:
        return
    say(f"dry run of the config restore into new project {TARGET_REF} ({seconds:.1f} s), nothing written:")
    for planned in story.line("restore-validation:config").get("plan", []):
        say(f"  {planned.strip()}")


def _inventory(locations) -> None:
    from bhv360_backup import inventory
    from bhv360_backup.repository.layout import BackupType

    entries = inventory.build(locations, list(BackupType), deep=True)
    say("-- inventory --")
    for entry in entries:
        where = ",".join(name for name, state in entry.locations.items() if state != "missing")
        say(f"  {entry.type:<11} {entry.backup_id:<27} {_mb(entry.size):>9}  {where:<8} "
            f"{'verified' if entry.verified else 'NOT VERIFIED'}")


def main() -> int:
    repo = Path(__file__).resolve().parents[3]
    configure(repo)
    DEMO_DIR.mkdir(exist_ok=True)
    AIRFLOW_LOG.write_text("")
    say(f"bhv360-backup demo (Airflow's own records: {AIRFLOW_LOG})")
    with contextlib.ExitStack() as stack:
        source = source_database(stack) if "AIRFLOW_CONN_BHV360_DB" not in os.environ else None
        if "AIRFLOW_CONN_BHV360_SUPABASE" not in os.environ and "AIRFLOW_VAR_BHV360_STORAGE_SOURCE" not in os.environ:
            bucket_tree()
        project_api = (management_stand_in(stack)
                       if "AIRFLOW_CONN_BHV360_SUPABASE_MANAGEMENT" not in os.environ else None)
        if "AIRFLOW_VAR_BHV360_AGE_RECIPIENTS" not in os.environ:
            age_key()
        if "AIRFLOW_CONN_BHV360_S3" not in os.environ:
            s3_stand_in(stack)
            # the S3 stand-in starts empty, so the local location and job log start empty too
            shutil.rmtree(os.environ["AIRFLOW_VAR_BHV360_BACKUP_ROOT"], ignore_errors=True)
            shutil.rmtree(os.environ["AIRFLOW_VAR_BHV360_LOG_DIR"], ignore_errors=True)
        with airflow_output_to_log():
            subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], check=True)
            from airflow.dag_processing.dagbag import DagBag

            bag = DagBag(dag_folder=str(repo / "dags"))
        if bag.import_errors:
            say(f"DAG import errors: {bag.import_errors}")
            return 1

        from bhv360_backup.runtime import open_locations
        from bhv360_backup.settings import S3_CONN_ID, Settings

        settings = Settings.load()
        with airflow_output_to_log():
            locations = open_locations(settings, S3_CONN_ID)
        story = Story(bag, settings.log_dir)
        say(f"-- backups into {settings.backup_root} and s3://{settings.s3_bucket} --")
        for dag_id, backup_type in (("bhv360_database_backup", "database"), ("bhv360_config_backup", "config"),
                                    ("bhv360_storage_backup", "storage"), ("bhv360_storage_backup", "storage"),
                                    ("bhv360_full_backup", "full")):
            _tell_backup(story, dag_id, backup_type, locations)
        if source is not None:
            _point_in_time_part(story, source, locations)
        if project_api is not None:
            _project_part(story, project_api)
        _inventory(locations)
        say(f"job log: {settings.log_dir / 'jobs.jsonl'}; see it in the Airflow UI: make ui")
    if story.failed:
        say(f"FAILED: {', '.join(story.failed)} (details in {AIRFLOW_LOG})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
