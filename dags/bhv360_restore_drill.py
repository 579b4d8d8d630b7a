"""Airflow DAG of the weekly test restore (the seed's "Wekelijkse test restore"), after Saturday's full backup."""

from datetime import timedelta

from bhv360_backup.dag_factory import bhv360_dag
from bhv360_backup.operators.drill import RestoreDrillOperator

DRILL_DOC = """
### Restore drill (Saturdays 09:00)

Restores the newest database backup into a scratch database (created on the server of
`bhv360_restore_db`, dropped afterwards) and a sample of 50 objects of the newest storage snapshot
into a scratch folder, and checks row counts, checksums and object hashes against the backups.
The result (time to restore, rows, objects, pass/fail) goes to the job log; a failure alerts.
The daily health check reports when the newest drill did not pass.
"""

with bhv360_dag(
    "bhv360_restore_drill",
    cron="0 9 * * 6",
    timeout=timedelta(hours=12),
    doc_md=DRILL_DOC,
    tags=["restore", "drill"],
    retries=0,
):
    RestoreDrillOperator(task_id="drill")
