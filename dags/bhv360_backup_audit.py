"""Airflow DAG of the quarterly audit (the seed's "Kwartaal audit" by the security officer)."""

from datetime import timedelta

from bhv360_backup.dag_factory import bhv360_dag
from bhv360_backup.operators.audit import BackupAuditOperator

AUDIT_DOC = """
### Backup audit (quarterly: 1 January, April, July, October, 06:00)

An HTML report of the quarter that ended: per type, backups taken against the schedule, failures
and their causes, sizes over time, retention compliance in each location, restore drills and their
times, and findings. Saved as `audit/<year>-Q<n>/report.html` in both locations and e-mailed to
`bhv360_alert_emails`.
"""

with bhv360_dag(
    "bhv360_backup_audit",
    cron="0 6 1 1,4,7,10 *",
    timeout=timedelta(hours=2),
    doc_md=AUDIT_DOC,
    tags=["audit"],
):
    BackupAuditOperator(task_id="report")
