"""What every BHV360 backup DAG shares: schedule in the local zone, retries, alerts, tags."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, CronTriggerTimetable, chain

from bhv360_backup.alerts import dag_failure_alert, task_failure_alert, task_success_resolved
from bhv360_backup.operators.retention import RetentionOperator
from bhv360_backup.operators.verify import VerifyBackupOperator
from bhv360_backup.settings import schedule_timezone, task_queue

START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")


def backup_asset(backup_type: str) -> Asset:
    """The Asset a backup of this type updates; the restore drill is scheduled on it."""
    return Asset(f"bhv360://backups/{backup_type}", group="bhv360_backups")


def default_args(retries: int = 2) -> dict:
    return {
        "owner": "bhv360-ops",
        "retries": retries,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(hours=1),
        "on_failure_callback": [task_failure_alert],
        "on_success_callback": [task_success_resolved],
        "queue": task_queue(),
    }


def bhv360_dag(
    dag_id: str,
    *,
    cron: str | None,
    timeout: timedelta,
    doc_md: str,
    tags: list[str],
    retries: int = 2,
    params: dict | None = None,
) -> DAG:
    """A DAG on ``cron`` in the ``bhv360_timezone`` zone (DST-correct), one run at a time, no catch-up."""
    schedule = CronTriggerTimetable(cron, timezone=schedule_timezone()) if cron else None
    return DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timeout,
        default_args=default_args(retries),
        doc_md=doc_md,
        tags=["bhv360", *tags],
        params=params,
        on_failure_callback=dag_failure_alert,
    )


def backup_dag(
    dag_id: str, backup_type: str, cron: str, timeout: timedelta, producer: type, task_id: str, doc_md: str
) -> DAG:
    """One row of the seed's schedule: make the backup, verify it in both locations, apply retention."""
    with bhv360_dag(dag_id, cron=cron, timeout=timeout, doc_md=doc_md, tags=["backup", backup_type]) as dag:
        chain(
            producer(task_id=task_id, outlets=[backup_asset(backup_type)]),
            VerifyBackupOperator(task_id="verify", backup_type=backup_type),
            RetentionOperator(task_id="retention", backup_type=backup_type),
        )
    return dag
