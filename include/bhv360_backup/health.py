"""The daily health check: every type in every location is fresh, intact and the same, every kept
backup is read back in full at least once a week, and the newest restore drill passed.

Deep checks rotate by a fixed slot: a backup is read back in full on the weekday it was made, a
storage blob on a day derived from its key's hash, so each one comes round every ``cycle`` days
(7 by default) and about a seventh of everything is read each day. The newest
backup of each type is read back in full on every run, so on its first. A backup whose last deep
check in the job log is a cycle old or more (a health run was missed) is read back too.
Storage snapshots share their blobs: each blob is read in full on its own slot, once per cycle,
however many snapshots name it, and each snapshot's list of blobs is checked for presence and size
on the snapshot's slot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from bhv360_backup import joblog
from bhv360_backup.errors import BackupError, first_line
from bhv360_backup.locations.base import Location
from bhv360_backup.repository.blobs import (
    BlobExpectation,
    blob_expectations,
    read_back_blob,
    verify_snapshot_blobs,
)
from bhv360_backup.repository.catalog import list_backups, read_manifest
from bhv360_backup.repository.layout import BLOBS_ROOT, ID_PATTERN, BackupType
from bhv360_backup.repository.manifest import Manifest, parse_iso
from bhv360_backup.repository.verify import verify_backup

MAX_AGE = {
    BackupType.DATABASE: timedelta(hours=26),
    BackupType.CONFIG: timedelta(hours=26),
    BackupType.STORAGE: timedelta(days=8),
    BackupType.FULL: timedelta(days=8),
    BackupType.INCREMENTAL: timedelta(minutes=15),  # three capture intervals of 5 minutes
}
DRILL_MAX_AGE = timedelta(days=8)
DEEP_CHECK_CYCLE_DAYS = 7


def format_age(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


def slot(name: str, cycle: int = DEEP_CHECK_CYCLE_DAYS) -> int:
    """The day of the cycle on which ``name`` is read back in full: a backup on the weekday it was made
    (so daily backups spread evenly: a seventh of them each day), a blob by its hash."""
    match = ID_PATTERN.match(name)
    if match:
        return datetime.strptime(match.group(1)[:8], "%Y%m%d").toordinal() % cycle
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % cycle


def due_today(name: str, today: date, cycle: int = DEEP_CHECK_CYCLE_DAYS, days: int = 1) -> bool:
    """Whether ``name``'s slot falls on today or, with ``days`` > 1, on one of the days before it."""
    return (today.toordinal() - slot(name, cycle)) % cycle < days


def deep_check_due(
    backup_ids: Sequence[str], today: date, last_checked: dict[str, datetime], now: datetime,
    cycle: int = DEEP_CHECK_CYCLE_DAYS,
) -> list[str]:
    """The backups (oldest first) to read back in full today: the newest, those on today's slot,
    and any whose last deep check is a cycle old or unknown (a missed run, a fresh job log)."""
    overdue = now - timedelta(days=cycle) + timedelta(hours=1)
    return [backup_id for position, backup_id in enumerate(backup_ids)
            if position == len(backup_ids) - 1 or due_today(backup_id, today, cycle)
            or last_checked.get(backup_id, datetime.min.replace(tzinfo=now.tzinfo)) <= overdue]


@dataclass(frozen=True)
class Finding:
    """One problem, named by the backup (or the drill) it is about."""

    subject: str  # a backup type, or "restore drill"
    problem: str
    location: str | None = None
    backup_id: str | None = None

    def render(self) -> str:
        where = f" @ {self.location}" if self.location else ""
        about = f": {self.backup_id}" if self.backup_id else ""
        return f"{self.subject}{where}{about}: {self.problem}"


class HealthFindings(BackupError):
    """The check found problems; ``details`` is the table for the alert."""

    def __init__(self, findings: Sequence[Finding], table: list[str]) -> None:
        super().__init__(f"{len(findings)} backup health finding(s): {findings[0].render()}")
        self.details = ["Findings:", *(finding.render() for finding in findings), "", *table]


@dataclass
class Row:
    type: str
    location: str
    backup: str
    age: str
    size: int
    state: str

    def render(self) -> str:
        return f"{self.type:<9} {self.location:<6} {self.backup:<27} {self.age:>9} {self.size:>14,}  {self.state}"


@dataclass
class HealthReport:
    rows: list[Row] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    deep_checked: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # location -> type -> ids
    blobs_read: dict[str, int] = field(default_factory=dict)
    slot: dict[str, Any] | None = None


@dataclass
class History:
    """From the health job log: when each (location, type, backup id) was last read back in full, and
    when the health check last ran."""

    checked: dict[tuple[str, str, str], datetime] = field(default_factory=dict)
    last_run: datetime | None = None

    @classmethod
    def read(cls, log_dir: Path) -> History:
        history = cls()
        for line in joblog.read(log_dir, "health"):
            history.last_run = parse_iso(line["time"])
            for location, by_type in (line.get("deep_checked") or {}).items():
                for backup_type, ids in by_type.items():
                    for backup_id in ids:
                        history.checked[(location, backup_type, backup_id)] = history.last_run
        return history

    def days_to_catch_up(self, today: date, cycle: int) -> int:
        """Today, plus the days since the last run that no run covered (all of a cycle on a first run)."""
        if self.last_run is None:
            return cycle
        return max(1, min(cycle, (today - self.last_run.date()).days))


def _problems(location: Location, manifest: Manifest, present: dict[str, int] | None) -> list[str]:
    """A deep check: every artifact read back; for a snapshot, its blobs present with their sizes."""
    problems = [f.problem for f in verify_backup(location, manifest, deep=True)]
    if present is not None and not problems:
        problems = verify_snapshot_blobs(location, manifest, present)[:5]
    return problems


def _check_blobs(
    location: Location, blobs: Iterable[BlobExpectation], today: date, cycle: int, days: int
) -> tuple[int, list[str]]:
    read, problems = 0, []
    for blob in blobs:
        if due_today(blob.key, today, cycle, days):
            read += 1
            if problem := read_back_blob(location, blob):
                problems.append(problem)
    return read, problems


def check(
    locations: Sequence[Location], now: datetime, log_dir: Path, *, cycle: int = DEEP_CHECK_CYCLE_DAYS,
    max_age: Mapping[BackupType, timedelta] | None = None,
) -> HealthReport:
    """The state table, the findings, and what was read back in full (for the job log). ``max_age``
    overrides how old the newest backup of a type may be (incremental: three capture intervals; a type
    mapped to None is not expected at all)."""
    report = HealthReport()
    history = History.read(log_dir)
    ages = {**MAX_AGE, **(max_age or {})}
    for backup_type in BackupType:
        if ages.get(backup_type) is None:
            continue
        ids_by_location: dict[str, set[str]] = {}
        for location in locations:
            try:
                ids = list_backups(location, backup_type)
            except Exception as error:  # noqa: BLE001 - reported as a finding
                report.findings.append(Finding(backup_type.value, f"location unreadable: {first_line(error)}",
                                               location.name))
                continue
            ids_by_location[location.name] = set(ids)
            if not ids:
                report.findings.append(Finding(backup_type.value, "no complete backup", location.name))
                report.rows.append(Row(backup_type.value, location.name, "-", "-", 0, "MISSING"))
                continue
            _check_type(report, location, backup_type, ids, now, cycle, history, ages[backup_type])
        if len(ids_by_location) == len(locations) > 1:
            union = set.union(*ids_by_location.values())
            for name, ids in ids_by_location.items():
                for backup_id in sorted(union - ids)[:5]:
                    report.findings.append(Finding(backup_type.value, "missing here, present in the other location",
                                                   name, backup_id))
    _check_drill(report, log_dir, now)
    return report


def _check_type(
    report: HealthReport, location: Location, backup_type: BackupType, ids: list[str], now: datetime, cycle: int,
    history: History, max_age: timedelta,
) -> None:
    newest_id = ids[-1]
    last_checked = {backup_id: moment for (where, kind, backup_id), moment in history.checked.items()
                    if where == location.name and kind == backup_type.value}
    due = set(deep_check_due(ids, now.date(), last_checked, now, cycle))
    problems_by_id: dict[str, list[str]] = {}
    blobs: dict[str, BlobExpectation] = {}
    newest: Manifest | None = None
    storage = backup_type == BackupType.STORAGE
    present = {item.key: item.size for item in location.iter_objects(BLOBS_ROOT)} if storage else None
    for backup_id in ids:
        if backup_id not in due and not storage:
            continue
        try:
            manifest = read_manifest(location, backup_type, backup_id)
            if storage:  # every kept snapshot's blobs are in the rotation, however old the snapshot
                blobs.update((blob.key, blob) for blob in blob_expectations(location, manifest))
            problems = _problems(location, manifest, present) if backup_id in due else []
        except Exception as error:  # noqa: BLE001 - a finding about this backup
            manifest, problems = None, [first_line(error)]
        if backup_id == newest_id:
            newest = manifest
        if backup_id in due:
            problems_by_id[backup_id] = problems
            report.deep_checked.setdefault(location.name, {}).setdefault(backup_type.value, []).append(backup_id)
    if storage:
        read, blob_problems = _check_blobs(location, blobs.values(), now.date(), cycle,
                                           history.days_to_catch_up(now.date(), cycle))
        report.blobs_read[location.name] = read
        for problem in blob_problems[:10]:
            report.findings.append(Finding(backup_type.value, problem, location.name))
    age = now - newest.completed_at if newest else None
    for backup_id, problems in problems_by_id.items():
        for problem in problems[:5]:
            report.findings.append(Finding(backup_type.value, problem, location.name, backup_id))
        if problems and backup_id != newest_id:
            report.rows.append(Row(backup_type.value, location.name, backup_id, "", 0, "DAMAGED"))
    state = "ok"
    if age is not None and age > max_age:
        state = "STALE"
        report.findings.append(Finding(backup_type.value, f"newest backup is {format_age(age)} old (allowed "
                                       f"{format_age(max_age)})", location.name, newest_id))
    if problems_by_id.get(newest_id):
        state = "DAMAGED"
    report.rows.append(Row(backup_type.value, location.name, newest_id, format_age(age) if age else "-",
                           newest.size if newest else 0, state))


def check_slot(report: HealthReport, state: Any, max_retained_bytes: int, interval: timedelta) -> None:
    """The capture slot exists and holds back no more WAL than allowed: a stalled capture makes the
    source keep its WAL and, in the end, fill its disk."""
    if not state.exists:
        report.findings.append(Finding("incremental", f"replication slot {state.name} does not exist: no change "
                                       "is being captured (the incremental DAG creates it on its next run)"))
        report.rows.append(Row("slot", "source", state.name, "-", 0, "MISSING"))
        return
    if state.lost:
        report.findings.append(Finding("incremental", state.recovery()))
        report.rows.append(Row("slot", "source", state.name, "-", 0, "LOST"))
        report.slot = {"name": state.name, "active": state.active, "wal_status": state.wal_status}
        return
    if state.wal_status == "unreserved":
        report.findings.append(Finding("incremental", f"replication slot {state.name} is about to be invalidated "
                                       "(wal_status unreserved: it holds back more WAL than max_slot_wal_keep_size "
                                       "and the next checkpoint may remove it): run the incremental DAG now"))
    retained = f"{state.retained_bytes / 1e6:,.0f} MB WAL held"
    if state.retained_bytes > max_retained_bytes:
        report.findings.append(Finding("incremental", f"replication slot {state.name} holds {retained[:-9]} of WAL "
                                       f"(allowed {max_retained_bytes / 1e6:,.0f} MB): the capture is stalled or "
                                       "falling behind; the source keeps WAL until it catches up"))
    label = "BEHIND" if state.retained_bytes > max_retained_bytes else "AT RISK" \
        if state.wal_status == "unreserved" else "ok"
    report.rows.append(Row("slot", "source", state.name, "active" if state.active else "inactive", 0, label))
    report.slot = {"name": state.name, "active": state.active, "retained_bytes": state.retained_bytes,
                   "confirmed_flush_lsn": state.confirmed_flush_lsn, "wal_status": state.wal_status}


def _check_drill(report: HealthReport, log_dir: Path, now: datetime) -> None:
    drills = joblog.read(log_dir, "drill")
    if not drills:
        report.findings.append(Finding("restore drill", "no drill has run yet"))
        return
    last = drills[-1]
    if last["status"] != "success":
        error = str(last.get("error", "")).splitlines()[0][:200] if last.get("error") else "no error recorded"
        report.findings.append(Finding("restore drill", f"the newest drill failed: {error}"))
    elif now - parse_iso(last["time"]) > DRILL_MAX_AGE:
        report.findings.append(Finding("restore drill", f"the newest drill passed {format_age(now - parse_iso(last['time']))} ago"))


def render_table(rows: Sequence[Row]) -> list[str]:
    header = f"{'type':<9} {'where':<6} {'backup':<27} {'age':>9} {'size':>14}  state"
    return [header, *(row.render() for row in rows)]
