"""The quarterly audit report for a synthetic quarter of job-log lines and backups."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from bhv360_backup import audit, joblog
from bhv360_backup.repository.layout import BackupType
from tests.fixtures.airflow import run_dag
from tests.operators.test_health import store

Q3 = audit.Quarter(2026, 3)


def line(day: date, type_: str, status: str = "success", locations=("local", "s3"), **extra):
    moment = datetime(day.year, day.month, day.day, 1, 5, tzinfo=timezone.utc)
    return {"time": moment.isoformat().replace("+00:00", "Z"), "type": type_, "status": status,
            "dag_id": f"bhv360_{type_}_backup", "run_id": f"scheduled__{day}", "backup_id": f"{day:%Y%m%d}T000000Z",
            "bytes": 1_000_000 + day.toordinal() % 97 * 1000,
            "locations": list(locations) if status == "success" else [], **extra}


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
    assert "<tr><td>database</td><td>92</td><td>89</td><td>89</td><td>92</td><td>3</td>" in report
    assert "<tr><td>full</td><td>13</td><td>12</td><td>12</td><td>12</td><td>0</td>" in report
    assert "<tr><td>storage</td><td>13</td><td>13</td><td>13</td><td>13</td><td>0</td>" in report
    assert "pg_dump failed (exit 1): connection refused</td><td>3</td>" in report
    assert report.count("<svg") == 4
    assert "restore drill at 2026-09-26T01:05:00Z failed" in report
    assert "local: 14 database backup(s) kept past 30 days" in report
    (mail,) = backup_env.smtp.messages
    assert "audit report 2026-Q3" in mail["Subject"]


def test_the_tries_of_one_run_count_once_and_a_local_copy_counts_as_taken():
    day = date(2026, 8, 4)
    s3_down = "database backup 20260804T000000Z is complete only in local; missing in s3: unreachable"
    tries = [line(day, "database", "failed", error=s3_down) | {"locations": ["local"]} for _ in range(3)]
    summaries = audit.summarise(tries, Q3)
    database = summaries["database"]
    assert (database.runs, database.failed, database.tries) == (1, 1, 3)
    assert (database.taken("local"), database.taken("s3")) == (1, 0)
    assert database.causes == {s3_down: 1}

    retried = [*tries, line(day, "database")]  # the fourth try copied it to s3
    database = audit.summarise(retried, Q3)["database"]
    assert (database.runs, database.failed, database.taken("local"), database.taken("s3")) == (1, 0, 1, 1)


def test_a_day_is_the_local_day_of_the_schedule_across_a_dst_change():
    from zoneinfo import ZoneInfo

    amsterdam = ZoneInfo("Europe/Amsterdam")
    # 01:00 in Amsterdam is 23:00 UTC the day before in summer, 00:00 UTC in winter (change on 25 October)
    ids = ["20261023T230000Z", "20261024T230000Z", "20261026T000000Z", "20261027T000000Z"]
    lines = [{"time": f"{i[:4]}-{i[4:6]}-{i[6:8]}T23:30:00Z", "type": "database", "status": "success",
              "dag_id": "d", "run_id": i, "backup_id": i, "locations": ["local"]} for i in ids]
    q4 = audit.Quarter(2026, 4)
    covered = audit.summarise(lines, q4, amsterdam)["database"].covered["local"]
    assert sorted(covered) == [date(2026, 10, 24), date(2026, 10, 25), date(2026, 10, 26), date(2026, 10, 27)]


def test_the_worst_recovery_point_of_each_day():
    base = datetime(2026, 8, 4, 10, 0, tzinfo=timezone.utc)
    minutes = [0, 5, 10, 15, 40, 45]  # a capture failed for twenty minutes before 10:40
    lines = [{"type": "incremental", "status": "success", "time": (base + timedelta(minutes=m)).isoformat(),
              "captured_until": (base + timedelta(minutes=m)).isoformat()} for m in minutes]
    assert audit.recovery_points(lines, Q3) == {date(2026, 8, 4): 25.0}
