"""The quarterly audit report for the security officer (the seed's "Kwartaal audit").

Per type: backups taken against the schedule, failures and their causes, sizes and durations over
time (charts), retention compliance in each location, restore drills with their times, and findings
with what to do. Built from the job log and the locations; one self-contained HTML file, rendered
to PDF as well.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from bhv360_backup.charts import line_chart
from bhv360_backup.errors import BackupError
from bhv360_backup.locations.base import Location
from bhv360_backup.repository.catalog import list_backups, read_manifest
from bhv360_backup.repository.layout import ID_PATTERN, BackupType
from bhv360_backup.repository.manifest import parse_iso
from bhv360_backup.repository.retention import RetentionPolicy, protected_components

UTC_ZONE = ZoneInfo("UTC")
RECOVERY_POINT_FINDING_MINUTES = 15  # three default capture intervals
# weekday() of the weekly backups: Sunday (storage) and Saturday (full)
SCHEDULE_DAYS = {BackupType.DATABASE: None, BackupType.CONFIG: None, BackupType.STORAGE: 6, BackupType.FULL: 5,
                 BackupType.INCREMENTAL: None}  # incremental: a day counts once it has a segment


@dataclass(frozen=True)
class Quarter:
    year: int
    number: int

    @classmethod
    def before(cls, moment: datetime) -> Quarter:
        """The quarter that ended before ``moment`` (the report a quarterly run makes)."""
        previous = (moment - timedelta(days=1)).date()
        return cls(previous.year, (previous.month - 1) // 3 + 1)

    @property
    def start(self) -> date:
        return date(self.year, 3 * self.number - 2, 1)

    @property
    def end(self) -> date:
        return date(self.year + 1, 1, 1) if self.number == 4 else date(self.year, 3 * self.number + 1, 1)

    @property
    def name(self) -> str:
        return f"{self.year}-Q{self.number}"

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment.astimezone(timezone.utc).date() < self.end


def expected_runs(backup_type: BackupType, quarter: Quarter) -> int:
    days = (quarter.end - quarter.start).days
    weekday = SCHEDULE_DAYS[backup_type]
    if weekday is None:
        return days
    return sum(1 for offset in range(days) if (quarter.start + timedelta(days=offset)).weekday() == weekday)


@dataclass
class TypeSummary:
    """One type's quarter: runs (a run's tries counted once, by its last try), failed runs, and the
    scheduled days (or weeks) on which a complete backup landed, per location."""

    type: str
    expected: int
    runs: int = 0
    failed: int = 0
    tries: int = 0
    covered: dict[str, set[date]] = field(default_factory=dict)
    causes: Counter = field(default_factory=Counter)
    sizes: list[tuple[str, int]] = field(default_factory=list)

    def taken(self, location: str) -> int:
        return min(len(self.covered.get(location, ())), self.expected)

    def coverage(self, locations: Sequence[str]) -> float:
        """The share of scheduled backups complete in every location (the weakest location counts)."""
        if not self.expected:
            return 1.0
        return min((self.taken(location) for location in locations), default=0) / self.expected


def _backup_day(line: dict[str, Any], backup_type: BackupType, zone: ZoneInfo) -> date:
    """The scheduled day a backup belongs to (local time of its due time, the start of its week for
    weekly types), so a retry, a late run or a DST change never counts a day twice or drops one."""
    match = ID_PATTERN.match(str(line.get("backup_id") or ""))
    due = (datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc) if match
           else parse_iso(line["time"]))
    day = due.astimezone(zone).date()
    weekday = SCHEDULE_DAYS[backup_type]
    return day if weekday is None else day - timedelta(days=(day.weekday() - weekday) % 7)


def summarise(lines: Sequence[dict[str, Any]], quarter: Quarter, zone: ZoneInfo = UTC_ZONE) -> dict[str, TypeSummary]:
    """Per type: the quarter's runs and what they left. The job log has a line per try; the tries of
    one run (same DAG, run and type) count as one run, failed only if its last try failed, and its
    backup counts as taken in every location a try left it complete."""
    summaries = {t.value: TypeSummary(t.value, expected_runs(t, quarter)) for t in BackupType}
    runs: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for number, line in enumerate(lines):
        if line.get("type") in summaries and quarter.contains(parse_iso(line["time"])):
            key = (line.get("dag_id"), line.get("run_id"), line["type"]) if line.get("run_id") else (number,)
            runs.setdefault(key, []).append(line)
    for tries in runs.values():
        last = tries[-1]
        summary = summaries[last["type"]]
        summary.runs += 1
        summary.tries += len(tries)
        if last["status"] != "success":
            summary.failed += 1
            summary.causes[str(last.get("error", "unknown")).splitlines()[0][:160]] += 1
        day = _backup_day(last, BackupType(last["type"]), zone)
        for attempt in tries:
            for location in attempt.get("locations") or []:
                summary.covered.setdefault(location, set()).add(day)
        if last["status"] == "success":
            summary.sizes.append((last["time"], int(last.get("bytes") or 0)))
    return summaries


def recovery_points(lines: Sequence[dict[str, Any]], quarter: Quarter, zone: ZoneInfo = UTC_ZONE) -> dict[date, float]:
    """Per day, the worst recovery point in minutes: the longest stretch in which no segment captured the
    database's commits (from one capture's ``captured_until`` to the next), counted on the day it ended."""
    moments = sorted(parse_iso(line["captured_until"]) for line in lines
                     if line.get("type") == "incremental" and line.get("status") == "success" and line.get("captured_until"))
    worst: dict[date, float] = {}
    for before, after in zip(moments, moments[1:], strict=False):
        if quarter.contains(after):
            day = after.astimezone(zone).date()
            worst[day] = max(worst.get(day, 0.0), (after - before).total_seconds() / 60)
    return dict(sorted(worst.items()))


def retention_findings(
    locations: Sequence[Location], policy: RetentionPolicy, now: datetime
) -> list[str]:
    """Backups kept past the policy (beyond the newest ``keep_min``), and days inside it without a backup."""
    findings = []
    for location in locations:
        for backup_type in BackupType:
            times = {}
            for backup_id in list_backups(location, backup_type):
                try:
                    times[backup_id] = read_manifest(location, backup_type, backup_id).completed_at
                except BackupError as error:
                    findings.append(f"{location.name}: {backup_type.value} {backup_id} unreadable: {error}")
            ordered = sorted(times, key=times.get)
            protected = protected_components(location, policy, now, backup_type)
            overdue = [i for i in ordered[: max(0, len(ordered) - policy.keep_min)]
                       if times[i] < now - timedelta(days=policy.days + 1) and i not in protected]
            if overdue:
                findings.append(f"{location.name}: {len(overdue)} {backup_type.value} backup(s) kept past "
                                f"{policy.days} days: {', '.join(overdue[:5])}")
            if SCHEDULE_DAYS[backup_type] is None:
                days_with = {times[i].date() for i in ordered}
                window = [(now - timedelta(days=d)).date() for d in range(2, policy.days)]
                missing = [d for d in window if d not in days_with]
                if missing:
                    findings.append(f"{location.name}: {backup_type.value}: no backup on {len(missing)} day(s) inside "
                                    f"the retention window, e.g. {', '.join(map(str, missing[:5]))}")
    return findings


ADVICE = (
    ("scheduled backups complete in", "Find the failed runs in the job log and the alert mails, fix the cause "
     "(a connection, a full disk, S3 credentials) and clear the failed task: a retry reuses what was completed and "
     "copies a complete local copy to S3."),
    ("no restore drill ran", "Unpause bhv360_restore_drill; its server needs the API roles the grants name "
     "(README, Restore drill)."),
    ("restore drill at", "Read the drill's log: the restored database differs from the backup (listed per object) or "
     "could not be restored; restore the same backup by hand to confirm, then fix the backup or the target."),
    ("kept past", "Retention did not remove them: read the retention task's log (Object Lock keeps a locked backup "
     "until its date; that is not a failure)."),
    ("no backup on", "A day without a backup inside the retention window: check the schedule and the runs of that "
     "day; the DAG may have been paused."),
    ("recovery point reached", "The incremental capture stalled: read bhv360_incremental_backup's failed runs and "
     "the capture slot's WAL in the health check."),
    ("unreadable", "A manifest cannot be read: verify the backup (bhv360-backup verify) and restore from the other "
     "location."),
)
STYLE = """
@page{size:A4;margin:18mm 16mm;@bottom-right{content:"BHV360 backup audit · page " counter(page) " of " counter(pages);
font-size:8pt;color:#718096}}
body{font-family:"DejaVu Sans",sans-serif;color:#1a202c;font-size:10pt;max-width:900px;margin:auto}
h1{font-size:22pt;margin:0}h2{font-size:14pt;border-bottom:1px solid #cbd5e0;padding-bottom:3px;margin-top:18pt}
.cover{page-break-after:always;padding-top:60mm}.cover .period{font-size:14pt;margin:8pt 0}
.muted{color:#4a5568}table{border-collapse:collapse;width:100%;margin:6pt 0}
td,th{border-bottom:1px solid #e2e8f0;padding:3pt 5pt;text-align:left;font-size:9pt}th{color:#4a5568}
.bad{color:#9b2c2c;font-weight:600}.good{color:#276749}.page{page-break-before:always}
.tiles{display:flex;flex-wrap:wrap;gap:8pt}.tile{border:1px solid #cbd5e0;border-radius:6pt;padding:6pt 9pt;
min-width:120pt}.tile b{font-size:14pt;display:block}
svg{width:100%;height:auto}.chart-dark{display:none}
"""


def advice(finding: str) -> str:
    return next((text for key, text in ADVICE if key in finding), "Investigate with the job log and the task logs.")


def _evidence(summaries: dict[str, TypeSummary], drills: Sequence[dict[str, Any]], recovery: dict[date, float],
              quarter: Quarter, location_names: Sequence[str], zone: ZoneInfo) -> str:
    """One row a day: for each type due that day, where a complete backup landed; drills; recovery point."""
    rows = []
    drill_days = {parse_iso(d["time"]).astimezone(zone).date(): d for d in drills}
    day = quarter.start
    while day < quarter.end:
        cells = [f"<td>{day.isoformat()} {day.strftime('%a')}</td>"]
        for backup_type in (BackupType.DATABASE, BackupType.CONFIG, BackupType.STORAGE, BackupType.FULL):
            weekday = SCHEDULE_DAYS[backup_type]
            if weekday is not None and day.weekday() != weekday:
                cells.append("<td class='muted'>·</td>")
                continue
            where = [name for name in location_names if day in summaries[backup_type.value].covered.get(name, ())]
            text = "✓ both" if len(where) == len(location_names) else (f"{', '.join(where)} only" if where else "✗ none")
            cells.append(f"<td class='{'good' if len(where) == len(location_names) else 'bad'}'>{text}</td>")
        drill = drill_days.get(day)
        cells.append(f"<td class='{'good' if drill['status'] == 'success' else 'bad'}'>{drill['status']}</td>"
                     if drill else "<td class='muted'>·</td>")
        cells.append(f"<td>{recovery[day]:.0f} min</td>" if day in recovery else "<td class='muted'>·</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
        day += timedelta(days=1)
    return ("<table id='evidence'><tr><th>day</th><th>database</th><th>config</th><th>storage</th><th>full</th>"
            "<th>drill</th><th>worst recovery point</th></tr>" + "".join(rows) + "</table>")


def render(quarter: Quarter, summaries: dict[str, TypeSummary], drills: Sequence[dict[str, Any]],
           findings: Sequence[str], generated: datetime, location_names: Sequence[str],
           recovery: dict[date, float] | None = None, zone: ZoneInfo = UTC_ZONE) -> str:
    """The report as one self-contained HTML page (print CSS: a cover, then the summary, charts, evidence
    and findings); :func:`render_pdf` makes the PDF of it."""
    e = html.escape
    recovery = recovery or {}
    scheduled = [s for s in summaries.values() if s.type != BackupType.INCREMENTAL.value]
    passed = [d for d in drills if d["status"] == "success"]
    restore_times = sorted(float(d["restore_seconds"]) for d in passed if d.get("restore_seconds") is not None)
    tiles = [(f"{min((s.coverage(location_names) for s in scheduled), default=0):.0%}", "lowest coverage of a type"),
             (str(sum(s.failed for s in scheduled)), "failed backup runs"),
             (f"{len(passed)} of {len(drills)}", "restore drills passed"),
             (f"{max(recovery.values()):.0f} min" if recovery else "1 day", "worst recovery point"),
             (f"{restore_times[len(restore_times) // 2]:.0f} s" if restore_times else "-", "median drill restore time")]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>BHV360 backup audit {quarter.name}</title>"
             f"<style>{STYLE}</style></head><body>",
             f"<div class='cover'><h1>BHV360 backup audit {quarter.name}</h1>"
             f"<div class='period'>{quarter.start} to {quarter.end - timedelta(days=1)}</div>"
             f"<div class='muted'>Generated {e(generated.isoformat(timespec='seconds'))} by bhv360-backup from the job "
             "log and the backup locations. Evidence of tested backups (ISO/IEC 27001:2022, control 8.13, "
             "information backup). The sha256 of this report is in its manifest.json, in both backup locations."
             "</div></div>",
             "<h2>Summary</h2><div class='tiles'>" + "".join(f"<div class='tile'><b>{value}</b>{label}</div>"
                                                             for value, label in tiles) + "</div>",
             "<h3>Backups taken against the schedule</h3><table id='coverage'><tr><th>type</th><th>expected</th>"
             + "".join(f"<th>taken ({e(name)})</th>" for name in location_names)
             + "<th>runs</th><th>failed runs</th><th>coverage</th></tr>"]
    for s in scheduled:
        coverage = s.coverage(location_names)
        taken = "".join(f"<td>{s.taken(name)}</td>" for name in location_names)
        parts.append(f"<tr><td>{s.type}</td><td>{s.expected}</td>{taken}<td>{s.runs}</td><td>{s.failed}</td>"
                     f"<td class=\"{'bad' if coverage < 1 else 'good'}\">{coverage:.0%}</td></tr>")
    parts.append("</table><h3>Failures and their causes</h3>")
    causes = [(s.type, cause, n) for s in summaries.values() for cause, n in s.causes.most_common()]
    parts.append("<table><tr><th>type</th><th>cause</th><th>runs</th></tr>" + "".join(
        f"<tr><td>{t}</td><td>{e(c)}</td><td>{n}</td></tr>" for t, c, n in causes) + "</table>"
                 if causes else "<p>No failures.</p>")
    parts.append("<h3>Restore drills</h3>")
    parts.append("<table id='drills'><tr><th>time</th><th>result</th><th>restore time</th><th>rows</th><th>objects</th>"
                 "</tr>" + "".join(f"<tr><td>{e(d['time'])}</td><td class=\"{'good' if d['status'] == 'success' else 'bad'}\">"
                                   f"{e(d['status'])}</td><td>{d.get('restore_seconds', '')} s</td>"
                                   f"<td>{d.get('rows', '')}</td><td>{d.get('objects', '')}</td></tr>" for d in drills)
                 + "</table>" if drills else "<p class='bad'>No restore drill ran this quarter.</p>")
    parts.append("<div class='page'><h2>Charts</h2>")
    for s in scheduled:
        points = [(parse_iso(moment), float(size)) for moment, size in s.sizes]
        parts.append(line_chart(points, f"{s.type}: backup size", "bytes", themes=("light",)))
    if restore_times:
        parts.append(line_chart([(parse_iso(d["time"]), float(d["restore_seconds"])) for d in passed],
                                "restore drill: time to restore", "seconds", themes=("light",)))
    if recovery:
        parts.append(line_chart([(datetime.combine(day, datetime.min.time(), timezone.utc), minutes * 60)
                                 for day, minutes in recovery.items()], "worst recovery point of the day", "seconds",
                                themes=("light",)))
    parts.append("</div><div class='page'><h2>Evidence, day by day</h2>")
    parts.append(_evidence(summaries, drills, recovery, quarter, location_names, zone) + "</div>")
    parts.append("<div class='page'><h2>Findings and what to do</h2>")
    parts.append("<table id='findings'><tr><th>finding</th><th>what to do</th></tr>" + "".join(
        f"<tr><td class='bad'>{e(f)}</td><td>{e(advice(f))}</td></tr>" for f in findings) + "</table>"
                 if findings else "<p class='good'>No findings.</p>")
    parts.append("</div></body></html>")
    return "\n".join(parts)


def render_pdf(report_html: str) -> bytes:
    """The report's PDF, from the same HTML (WeasyPrint: pages, page numbers, vector charts)."""
    from weasyprint import HTML

    return HTML(string=report_html).write_pdf()


def store_report(locations: Sequence[Location], quarter: Quarter, files: dict[str, bytes], generated: datetime,
                 findings: Sequence[str]) -> dict[str, Any]:
    """The report's files in every location, then its manifest (their sizes and sha256, so an auditor can
    check a copy was not altered), last."""
    folder = f"audit/{quarter.name}"
    manifest = {"format": 1, "quarter": quarter.name, "generated_at": generated.isoformat(timespec="seconds"),
                "findings": len(findings),
                "artifacts": [{"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                              for name, data in files.items()]}
    for location in locations:
        for name, data in files.items():
            location.put_bytes(f"{folder}/{name}", data)
        location.put_bytes(f"{folder}/manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def build_report(lines: Sequence[dict[str, Any]], locations: Sequence[Location], quarter: Quarter,
                 policy: RetentionPolicy, now: datetime, zone: ZoneInfo = UTC_ZONE) -> tuple[str, list[str]]:
    """The HTML report and its findings."""
    summaries = summarise(lines, quarter, zone)
    names = [location.name for location in locations]
    drills = [line for line in lines if line.get("type") == "drill" and quarter.contains(parse_iso(line["time"]))]
    findings = [f"{s.type}: {s.taken(name)} of {s.expected} scheduled backups complete in {name}"
                for s in summaries.values() for name in names if s.taken(name) < s.expected]
    if not drills:
        findings.append("no restore drill ran this quarter")
    findings += [f"restore drill at {d['time']} failed: {str(d.get('error', ''))[:160]}" for d in drills
                 if d["status"] != "success"]
    findings += retention_findings(locations, policy, now)
    recovery = recovery_points(lines, quarter, zone)
    findings += [f"recovery point reached {minutes:.0f} minutes on {day}" for day, minutes in recovery.items()
                 if minutes > RECOVERY_POINT_FINDING_MINUTES]
    return render(quarter, summaries, drills, findings, now, names, recovery, zone), findings
