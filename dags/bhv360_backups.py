"""The seed's backup schedule, one DAG per row (times in ``bhv360_timezone``, default Europe/Amsterdam).

| Type     | Frequency | Time  | Retention |
|----------|-----------|-------|-----------|
| Database | daily     | 01:00 | 30 days   |
| Storage  | Sundays   | 03:00 | 30 days   |
"""

from datetime import timedelta

from airflow.sdk import chain

from bhv360_backup.dag_factory import backup_asset, bhv360_dag
from bhv360_backup.operators.bucket_sync import BucketSyncOperator
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
