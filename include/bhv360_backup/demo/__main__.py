"""``make demo``: run the backup DAGs through Airflow on embedded defaults and print the inventory.

Where ``bhv360_db`` is not configured, a demo database on the local PostgreSQL (or a throwaway
cluster) is generated; where ``bhv360_s3`` is not configured, moto's S3 server runs on 127.0.0.1
for the length of the demo. Encryption is on: where no recipients are configured, a demo age key
is made in ``.demo/age-key.txt``. Backups, logs and Airflow's home go under ``.demo/`` in the checkout.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

DEMO_DIR = Path(".demo").resolve()
DEMO_DB = "bhv360_demo"
DEMO_MB = 30
# the storage backup runs twice: the second run finds nothing changed and reuses every object
DEMO_DAGS = ("bhv360_database_backup", "bhv360_config_backup", "bhv360_storage_backup", "bhv360_storage_backup",
             "bhv360_full_backup")


def _configure(repo: Path) -> None:
    os.environ.setdefault("AIRFLOW_HOME", str(DEMO_DIR / "airflow"))
    os.environ.update(
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(repo / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(repo / "plugins"),
    )
    os.environ.setdefault("AIRFLOW_VAR_BHV360_BACKUP_ROOT", str(DEMO_DIR / "backups"))
    os.environ.setdefault("AIRFLOW_VAR_BHV360_LOG_DIR", str(DEMO_DIR / "logs"))


def _demo_database(stack: contextlib.ExitStack) -> None:

    from bhv360_backup.demo.data import create_demo_database, organisations_for_mb
    from bhv360_backup.demo.servers import postgres_server

    DEMO_DIR.mkdir(exist_ok=True)
    server = stack.enter_context(postgres_server(parent=DEMO_DIR))
    with server.connect(autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DEMO_DB]).fetchone()
        if not exists:
            connection.execute(f"CREATE DATABASE {DEMO_DB}")
    target = server.with_dbname(DEMO_DB)
    with target.connect(autocommit=True) as connection:
        if not connection.execute("SELECT to_regclass('public.staff')").fetchone()[0]:
            print(f"generating the demo database {DEMO_DB} (about {DEMO_MB} MB) ...", flush=True)
            create_demo_database(connection, organisations_for_mb(DEMO_MB))
        size = connection.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
    print(f"bhv360_db: demo database {target.describe()} ({size})")
    os.environ["AIRFLOW_CONN_BHV360_DB"] = json.dumps(
        {"conn_type": "postgres", "host": target.host, "port": target.port, "login": target.user, "schema": DEMO_DB}
    )
    os.environ.setdefault("AIRFLOW_VAR_BHV360_CONFIG_TABLES", "public.app_settings")


def _demo_s3(stack: contextlib.ExitStack) -> None:
    from bhv360_backup.demo.servers import MotoS3

    s3 = MotoS3().start()
    stack.callback(s3.stop)
    bucket = os.environ.get("AIRFLOW_VAR_BHV360_S3_BUCKET", "bhv360-backups")
    s3.create_bucket(bucket)
    os.environ["AIRFLOW_CONN_BHV360_S3"] = s3.connection_json()
    print(f"bhv360_s3: moto S3 server at {s3.endpoint}, bucket {bucket} (in memory, for this demo only)")


def _demo_buckets() -> None:
    from bhv360_backup.demo.buckets import create_demo_buckets

    folder = DEMO_DIR / "buckets"
    count = create_demo_buckets(folder)
    os.environ["AIRFLOW_VAR_BHV360_STORAGE_SOURCE"] = f"folder:{folder}"
    print(f"bhv360_storage_source: demo bucket tree {folder} ({count} files)")


def _demo_key() -> None:
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
    print(f"encryption: age, demo key {key_file} (decrypt any artifact: age -d -i {key_file} FILE)")


def _print_storage_runs(log_dir: Path) -> None:
    from bhv360_backup import joblog

    for number, line in enumerate((e for e in joblog.read(log_dir) if e["type"] == "storage"), start=1):
        stats = line.get("stats", {})
        print(f"storage run {number}: {line['status']}, {stats.get('seen')} objects seen, "
              f"{stats.get('downloaded')} downloaded, {stats.get('reused')} reused, "
              f"{stats.get('bytes_transferred')} bytes transferred")


def _print_full_set(locations) -> None:
    from bhv360_backup.repository.layout import BackupType

    ids = locations[0].list_backups(BackupType.FULL)
    if not ids:
        return
    manifest = locations[0].read_manifest(BackupType.FULL, ids[-1])
    print(f"\nFull set {manifest.backup_id}:")
    for name, component in sorted(manifest.details["components"].items()):
        print(f"  {name:<9} {component['backup_id']}  manifest sha256 {component['manifest_sha256']}")
    consistency = manifest.details["consistency"]
    print(f"  database snapshot {consistency['database_snapshot_time']}, storage listed "
          f"{consistency['storage_listing_started_at']} - {consistency['storage_listing_completed_at']} "
          f"({consistency['max_seconds_apart']} s apart)")


def main() -> int:
    repo = Path(__file__).resolve().parents[3]
    _configure(repo)
    with contextlib.ExitStack() as stack:
        if "AIRFLOW_CONN_BHV360_DB" not in os.environ:
            _demo_database(stack)
        if "AIRFLOW_CONN_BHV360_SUPABASE" not in os.environ and "AIRFLOW_VAR_BHV360_STORAGE_SOURCE" not in os.environ:
            _demo_buckets()
        if "AIRFLOW_VAR_BHV360_AGE_RECIPIENTS" not in os.environ:
            _demo_key()
        if "AIRFLOW_CONN_BHV360_S3" not in os.environ:
            _demo_s3(stack)
            # the S3 stand-in starts empty, so the local location and job log start empty too
            shutil.rmtree(os.environ["AIRFLOW_VAR_BHV360_BACKUP_ROOT"], ignore_errors=True)
            shutil.rmtree(os.environ["AIRFLOW_VAR_BHV360_LOG_DIR"], ignore_errors=True)
        subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], check=True,
                       stdout=subprocess.DEVNULL)

        from airflow.dag_processing.dagbag import DagBag

        from bhv360_backup import inventory
        from bhv360_backup.repository.layout import BackupType
        from bhv360_backup.runtime import open_locations
        from bhv360_backup.settings import S3_CONN_ID, Settings

        bag = DagBag(dag_folder=str(repo / "dags"))
        if bag.import_errors:
            print(f"DAG import errors: {bag.import_errors}", file=sys.stderr)
            return 1
        failed = []
        for dag_id in DEMO_DAGS:
            print(f"\n=== running {dag_id} through Airflow (dag.test) ===", flush=True)
            run = bag.dags[dag_id].test()
            state = getattr(run.state, "value", run.state)
            print(f"=== {dag_id}: {state} ===")
            if state != "success":
                failed.append(dag_id)

        settings = Settings.load()
        print(f"\nInventory (local: {settings.backup_root}, cloud: s3://{settings.s3_bucket})")
        locations = open_locations(settings, S3_CONN_ID)
        print(inventory.render(inventory.build(locations, list(BackupType), deep=True)))
        _print_storage_runs(settings.log_dir)
        _print_full_set(locations)
        print(f"\nJob log: {settings.log_dir / 'jobs.jsonl'}")
    if failed:
        print(f"\nFAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
