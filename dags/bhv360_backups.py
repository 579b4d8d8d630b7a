"""The seed's backup schedule, one DAG per row (times in ``bhv360_timezone``, default Europe/Amsterdam).

| Type          | Frequency | Time  | Retention |
|---------------|-----------|-------|-----------|
| Database      | daily     | 01:00 | 30 days   |
| Configuration | daily     | 02:00 | 30 days   |
| Storage       | Sundays   | 03:00 | 30 days   |
| Full          | Saturdays | 04:00 | 30 days   |

Each single-type DAG runs: make the backup -> verify it in both locations -> retention.
"""

from datetime import timedelta

from airflow.sdk import chain

from bhv360_backup.dag_docs import CONFIG_DOC, DATABASE_DOC, FULL_DOC, STORAGE_DOC
from bhv360_backup.dag_factory import backup_asset, backup_dag, bhv360_dag
from bhv360_backup.operators.bucket_sync import BucketSyncOperator
from bhv360_backup.operators.config_snapshot import ConfigSnapshotOperator
from bhv360_backup.operators.full_set import FullBackupSetOperator
from bhv360_backup.operators.pg_dump import PgDumpOperator
from bhv360_backup.operators.retention import RetentionOperator
from bhv360_backup.operators.verify import VerifyBackupOperator

#          DAG id                     type        cron         run timeout          made by                     task   doc
database = backup_dag("bhv360_database_backup", "database", "0 1 * * *", timedelta(hours=6), PgDumpOperator, "dump",
                      DATABASE_DOC)
# the incremental segments no kept database backup needs any more go with the database backups
database.get_task("retention") >> RetentionOperator(task_id="retention_incremental", backup_type="incremental",
                                                    dag=database)
backup_dag("bhv360_config_backup", "config", "0 2 * * *", timedelta(hours=1), ConfigSnapshotOperator, "snapshot", CONFIG_DOC)
backup_dag("bhv360_storage_backup", "storage", "0 3 * * 0", timedelta(hours=20), BucketSyncOperator, "sync", STORAGE_DOC)

with bhv360_dag("bhv360_full_backup", cron="0 4 * * 6", timeout=timedelta(hours=23), doc_md=FULL_DOC,
                tags=["backup", "full"]):
    chain(
        [
            PgDumpOperator(task_id="database", outlets=[backup_asset("database")]),
            BucketSyncOperator(task_id="storage", outlets=[backup_asset("storage")]),
            ConfigSnapshotOperator(task_id="config", outlets=[backup_asset("config")]),
        ],
        FullBackupSetOperator(task_id="full_set", outlets=[backup_asset("full")]),
        VerifyBackupOperator(task_id="verify", backup_type="full"),
        RetentionOperator(task_id="retention", backup_type="full"),
    )
