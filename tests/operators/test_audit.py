"""The quarterly audit report for a synthetic quarter of job-log lines and backups."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta, timezone

from bhv360_backup import audit, joblog
from bhv360_backup.repository.layout import BackupType
from tests.fixtures.airflow import run_dag
from tests.fixtures.stored import store

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


def test_audit_report_for_a_synthetic_quarter(backup_env, monkeypatch, tmp_path):
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
        store([backup_env.local], BackupType.DATABASE, timedelta(days=days_ago, hours=1))

    monkeypatch.setattr(audit.Quarter, "before", classmethod(lambda cls, moment: Q3))
    run, states = run_dag("bhv360_backup_audit")

    assert states == {"report": "success"}
    report = backup_env.local.read_bytes("audit/2026-Q3/report.html").decode()
    assert backup_env.cloud.read_bytes("audit/2026-Q3/report.html").decode() == report
    assert "<tr><td>database</td><td>92</td><td>89</td><td>89</td><td>92</td><td>3</td>" in report
    assert "<tr><td>full</td><td>13</td><td>12</td><td>12</td><td>12</td><td>0</td>" in report
    assert "<tr><td>storage</td><td>13</td><td>13</td><td>13</td><td>13</td><td>0</td>" in report
    assert "pg_dump failed (exit 1): connection refused</td><td>3</td>" in report
    assert report.count("<svg") == 5  # four types' sizes and the drills' restore times
    assert "restore drill at 2026-09-26T01:05:00Z failed" in report
    assert "local: 14 database backup(s) kept past 30 days" in report and "Retention did not remove them" in report
    assert report.count("<tr><td>2026-") >= 92  # a row of evidence a day

    manifest = json.loads(backup_env.cloud.read_bytes("audit/2026-Q3/manifest.json"))
    for artifact in manifest["artifacts"]:
        for location in (backup_env.local, backup_env.cloud):
            data = location.read_bytes(f"audit/2026-Q3/{artifact['path']}")
            assert hashlib.sha256(data).hexdigest() == artifact["sha256"]  # what an auditor checks
    pdf = backup_env.local.read_bytes("audit/2026-Q3/report.pdf")
    pages = pdf_pages(pdf, tmp_path)
    assert len(pages) >= 5
    assert "BHV360 backup audit 2026-Q3" in pages[0]["text"] and "2026-07-01 to 2026-09-30" in pages[0]["text"]
    assert "restore drills passed" in pages[1]["text"] and "Backups taken against the schedule" in pages[1]["text"]
    charts = next(page for page in pages if "database: backup size" in page["text"])
    assert "MB" in charts["text"] and "Aug" in charts["text"] and charts["ink"] > 0.005  # axes, dates, a drawn line
    assert any("What to do" in page["text"] or "what to do" in page["text"] for page in pages)

    (mail,) = backup_env.smtp.messages
    assert "audit report 2026-Q3" in mail["Subject"]
    (attachment,) = list(mail.iter_attachments())
    assert attachment.get_filename() == "bhv360-backup-audit-2026-Q3.pdf" and attachment.get_content() == pdf


def pdf_pages(pdf: bytes, folder) -> list[dict]:
    """Each page's text, rendered to PNG too (its share of non-white pixels: the charts' ink)."""
    import os

    import pypdfium2

    document = pypdfium2.PdfDocument(pdf)
    pages = []
    for number, page in enumerate(document):
        image = page.render(scale=1.5).to_pil()
        pixels = image.convert("L").getdata()
        ink = sum(1 for value in pixels if value < 200) / len(pixels)
        pages.append({"text": page.get_textpage().get_text_range(), "ink": ink})
        if number < 3:
            image.save(folder / f"audit-page-{number + 1}.png")
            if os.environ.get("BHV360_SCREENSHOT_DIR"):
                image.save(os.path.join(os.environ["BHV360_SCREENSHOT_DIR"], f"audit-page-{number + 1}.png"))
    return pages


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
