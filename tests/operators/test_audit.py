"""The quarterly audit report for a synthetic quarter of job-log lines and backups."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from bhv360_backup import audit, joblog
from bhv360_backup.layout import BackupType
from tests.fixtures.airflow import run_dag
from tests.operators.test_health import store

Q3 = audit.Quarter(2026, 3)


def line(day: date, type_: str, status: str = "success", **extra):
    moment = datetime(day.year, day.month, day.day, 1, 5, tzinfo=timezone.utc)
    return {"time": moment.isoformat().replace("+00:00", "Z"), "type": type_, "status": status,
            "dag_id": f"bhv360_{type_}_backup", "run_id": "r", "bytes": 1_000_000 + day.toordinal() % 97 * 1000,
            **extra}


def test_expected_runs_follow_the_schedule():
    assert (Q3.start, Q3.end) == (date(2026, 7, 1), date(2026, 10, 1))
    assert audit.expected_runs(BackupType.DATABASE, Q3) == 92
    assert audit.expected_runs(BackupType.STORAGE, Q3) == 13  # Sundays
    assert audit.expected_runs(BackupType.FULL, Q3) == 13  # Saturdays
    assert audit.Quarter.before(datetime(2026, 10, 1, 4, tzinfo=timezone.utc)) == Q3


def test_audit_report_for_a_synthetic_quarter(backup_env, monkeypatch):
    days = [Q3.start + timedelta(days=n) for n in range(92)]
    lines = []
    for day in days:
        failed = day in (date(2026, 7, 14), date(2026, 8, 3), date(2026, 9, 9))
        lines.append(line(day, "database", "failed" if failed else "success",
                          **({"error": "pg_dump failed (exit 1): connection refused"} if failed else {})))
        lines.append(line(day, "config"))
        if day.weekday() == 6:
            lines.append(line(day, "storage"))
        if day.weekday() == 5 and day != date(2026, 8, 22):
            lines.append(line(day, "full"))
        if day.weekday() == 5:
            lines.append(line(day, "drill", "failed" if day == date(2026, 9, 26) else "success", restore_seconds=41.5,
                              rows=120000, objects=50, error="restored database does not match backup"))
    lines.append(line(date(2026, 6, 30), "database"))  # outside the quarter
    for entry in lines:
        joblog.append(backup_env.log_dir, entry)
    for days_ago in range(0, 45):  # a month and a half of daily database backups, kept past 30 days
        store(backup_env.local, BackupType.DATABASE, timedelta(days=days_ago, hours=1))

    monkeypatch.setattr(audit.Quarter, "before", classmethod(lambda cls, moment: Q3))
    run, states = run_dag("bhv360_backup_audit")

    assert states == {"report": "success"}
    report = backup_env.local.read_bytes("audit/2026-Q3/report.html").decode()
    assert backup_env.cloud.read_bytes("audit/2026-Q3/report.html").decode() == report
    assert "<tr><td>database</td><td>92</td><td>89</td><td>3</td>" in report
    assert "<tr><td>full</td><td>13</td><td>12</td><td>0</td>" in report
    assert "<tr><td>storage</td><td>13</td><td>13</td><td>0</td>" in report
    assert "pg_dump failed (exit 1): connection refused</td><td>3</td>" in report
    assert report.count("<svg") == 4
    assert "restore drill at 2026-09-26T01:05:00Z failed" in report
    assert "local: 14 database backup(s) kept past 30 days" in report
    (mail,) = backup_env.smtp.messages
    assert "audit report 2026-Q3" in mail["Subject"]
