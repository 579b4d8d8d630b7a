"""The seed's backup schedule, one DAG per row (times in ``bhv360_timezone``, default Europe/Amsterdam).

| Type     | Frequency | Time  | Retention |
|----------|-----------|-------|-----------|
| Database      | daily     | 01:00 | 30 days   |
| Configuration | daily     | 02:00 | 30 days   |
| Storage       | Sundays   | 03:00 | 30 days   |
| Full          | Saturdays | 04:00 | 30 days   |
"""

from datetime import timedelta

from airflow.sdk import chain

from bhv360_backup.dag_factory import backup_asset, bhv360_dag
from bhv360_backup.operators.bucket_sync import BucketSyncOperator
from bhv360_backup.operators.config_snapshot import ConfigSnapshotOperator
from bhv360_backup.operators.full_set import FullBackupSetOperator
from bhv360_backup.operators.pg_dump import PgDumpOperator
from bhv360_backup.operators.retention import RetentionOperator
from bhv360_backup.operators.verify import VerifyBackupOperator

DATABASE_DOC = """
### Database backup (daily 01:00)

`pg_dump --format=custom` of `bhv360_db` plus its roles (`pg_dumpall --roles-only`, no passwords),
streamed once into the local folder (`bhv360_backup_root`) and the S3 bucket (`bhv360_s3_bucket`),
read back and checked with `pg_restore --list`, then published by `manifest.json`.

* **dump**: writes, verifies, publishes. A retry reuses what an earlier try finished.
* **verify**: both locations hold the same manifest and every artifact with its size.
* **retention**: removes backups older than `bhv360_retention_days` (never the newest 3).

Failures alert `bhv360_alert_emails` and Slack `#ops`. Safe to *Clear* any task and re-run.
"""

with bhv360_dag(
    "bhv360_database_backup",
    cron="0 1 * * *",
    timeout=timedelta(hours=6),
    doc_md=DATABASE_DOC,
    tags=["backup", "database"],
):
    chain(
        PgDumpOperator(task_id="dump", outlets=[backup_asset("database")]),
        VerifyBackupOperator(task_id="verify", backup_type="database"),
        RetentionOperator(task_id="retention", backup_type="database"),
    )

CONFIG_DOC = """
### Configuration backup (daily 02:00)

One deterministic `config.json` (sorted keys; unchanged configuration, same sha256): Storage bucket
definitions; extensions, roles (no passwords), `ALTER ... SET` settings, row-level security and
policies, publications of `bhv360_db`; rows of the tables in `bhv360_config_tables`; the `bhv360_`
Variables (secret-looking values masked); files under `bhv360_config_paths`.
A section that cannot be read fails the task and names the section.
"""

with bhv360_dag(
    "bhv360_config_backup",
    cron="0 2 * * *",
    timeout=timedelta(hours=1),
    doc_md=CONFIG_DOC,
    tags=["backup", "config"],
):
    chain(
        ConfigSnapshotOperator(task_id="snapshot", outlets=[backup_asset("config")]),
        VerifyBackupOperator(task_id="verify", backup_type="config"),
        RetentionOperator(task_id="retention", backup_type="config"),
    )

STORAGE_DOC = """
### Storage backup (Sundays 03:00)

A snapshot of every Supabase Storage bucket (source: `bhv360_storage_source`, default `supabase`
with connection `bhv360_supabase`). Objects are stored once by sha256 under `blobs/` in each
location and shared between snapshots; unchanged objects (same etag, size, updated time) are not
downloaded again. The snapshot's index `objects.jsonl.gz` and the bucket definitions are in
`storage/<backup_id>/`.

* **sync**: lists, copies changed objects in parallel (`bhv360_storage_parallelism`), publishes.
* **verify**: both locations hold the manifest, the index and every blob it references.
* **retention**: removes expired snapshots, then blobs no snapshot references (48 h grace).
"""

with bhv360_dag(
    "bhv360_storage_backup",
    cron="0 3 * * 0",
    timeout=timedelta(hours=20),
    doc_md=STORAGE_DOC,
    tags=["backup", "storage"],
):
    chain(
        BucketSyncOperator(task_id="sync", outlets=[backup_asset("storage")]),
        VerifyBackupOperator(task_id="verify", backup_type="storage"),
        RetentionOperator(task_id="retention", backup_type="storage"),
    )

FULL_DOC = """
### Full backup (Saturdays 04:00)

A database dump, a storage snapshot and a config snapshot in one run, each a regular backup of its
type, then `full/<backup_id>/` naming the three with their manifests' sha256, the database snapshot
time and the storage listing's start and end, and a cross-check of `storage.objects` against the
snapshot. The set exists only when all three components are complete. Retention keeps the
components of every kept full set.
"""

with bhv360_dag(
    "bhv360_full_backup",
    cron="0 4 * * 6",
    timeout=timedelta(hours=23),
    doc_md=FULL_DOC,
    tags=["backup", "full"],
):
    components = [
        PgDumpOperator(task_id="database", outlets=[backup_asset("database")]),
        BucketSyncOperator(task_id="storage", outlets=[backup_asset("storage")]),
        ConfigSnapshotOperator(task_id="config", outlets=[backup_asset("config")]),
    ]
    chain(
        components,
        FullBackupSetOperator(task_id="full_set", outlets=[backup_asset("full")]),
        VerifyBackupOperator(task_id="verify", backup_type="full"),
        RetentionOperator(task_id="retention", backup_type="full"),
    )
