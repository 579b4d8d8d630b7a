"""The seed's "apply incremental backups where available": committed database changes and changed Storage
objects every few minutes (``bhv360_incremental_interval_minutes``, default 5), for point-in-time recovery."""

from datetime import timedelta

from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import chain

from bhv360_backup.dag_docs import INCREMENTAL_DOC
from bhv360_backup.dag_factory import backup_asset, bhv360_dag
from bhv360_backup.operators.incremental import IncrementalCaptureOperator, needs_new_chain
from bhv360_backup.settings import incremental_cron

with bhv360_dag("bhv360_incremental_backup", cron=incremental_cron(), timeout=timedelta(minutes=30),
                doc_md=INCREMENTAL_DOC, tags=["backup", "incremental"], retries=0):
    capture = IncrementalCaptureOperator(task_id="capture", outlets=[backup_asset("incremental")])
    chain(
        capture,
        ShortCircuitOperator(task_id="needs_new_chain", python_callable=needs_new_chain, op_args=[capture.output]),
        TriggerDagRunOperator(task_id="new_chain", trigger_dag_id="bhv360_database_backup", logical_date=None,
                              run_after=None),
    )
