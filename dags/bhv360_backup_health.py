"""Airflow DAG of the daily check (the seed's "Dagelijkse controle" by the operations team)."""

from datetime import timedelta

from bhv360_backup.dag_factory import bhv360_dag
from bhv360_backup.operators.health import BackupHealthOperator

HEALTH_DOC = """
### Backup health (daily 07:00)

For each type and location: the newest complete backup is younger than its schedule allows
(database, config: 26 h; storage, full: 8 days), its artifacts are all there with their sizes (and one
backup a day, rotating, is read back in full for its sha256), both locations hold the same backups,
and the newest restore drill passed within 8 days. Any finding fails the run and alerts e-mail and
`#ops` with the table; a green summary can be posted too (`bhv360_health_green_summary`).
"""

with bhv360_dag(
    "bhv360_backup_health",
    cron="0 7 * * *",
    timeout=timedelta(hours=2),
    doc_md=HEALTH_DOC,
    tags=["health"],
    retries=0,
):
    BackupHealthOperator(task_id="check")
