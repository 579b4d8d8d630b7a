"""The quarterly audit report for the security officer (the seed's "Kwartaal audit").

Per type: backups taken against the schedule, failures and their causes, sizes over time (an inline
SVG chart), retention compliance in each location, restore drills with their times, and findings.
Built from the job log and the locations; one self-contained HTML file.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from bhv360_backup.errors import BackupError
from bhv360_backup.locations.base import Location
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
            for backup_id in location.list_backups(backup_type):
                try:
                    times[backup_id] = location.read_manifest(backup_type, backup_id).completed_at
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


def svg_chart(points: Sequence[tuple[str, int]], width: int = 560, height: int = 140) -> str:
    if len(points) < 2:
        return "<p><i>not enough backups for a chart</i></p>"
    values = [size for _, size in points]
    top = max(values) or 1
    step = (width - 20) / (len(points) - 1)
    coords = " ".join(f"{10 + i * step:.1f},{height - 10 - (v / top) * (height - 20):.1f}" for i, v in enumerate(values))
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="backup size over time">'
            f'<polyline fill="none" stroke="#1f618d" stroke-width="2" points="{coords}"/>'
            f'<text x="10" y="12" font-size="10">max {top / 1e6:.1f} MB</text></svg>')


def render(quarter: Quarter, summaries: dict[str, TypeSummary], drills: Sequence[dict[str, Any]],
           findings: Sequence[str], generated: datetime, location_names: Sequence[str],
           recovery: dict[date, float] | None = None) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>BHV360 backup audit {quarter.name}</title>"
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #999;padding:4px 8px;text-align:left}.bad{color:#b03a2e}</style></head><body>",
             f"<h1>BHV360 backup audit {quarter.name}</h1>",
             f"<p>{quarter.start} to {quarter.end - timedelta(days=1)}; generated {e(generated.isoformat())}</p>",
             "<h2>Backups taken against the schedule</h2><table><tr><th>type</th><th>expected</th>"
             + "".join(f"<th>taken ({e(name)})</th>" for name in location_names)
             + "<th>runs</th><th>failed runs</th><th>coverage</th></tr>"]
    for s in summaries.values():
        coverage = s.coverage(location_names)
        taken = "".join(f"<td>{s.taken(name)}</td>" for name in location_names)
        parts.append(f"<tr><td>{s.type}</td><td>{s.expected}</td>{taken}<td>{s.runs}</td><td>{s.failed}</td>"
                     f"<td class=\"{'bad' if coverage < 1 else ''}\">{coverage:.0%}</td></tr>")
    parts.append("</table><h2>Failures and their causes</h2>")
    causes = [(s.type, cause, n) for s in summaries.values() for cause, n in s.causes.most_common()]
    parts.append("<table><tr><th>type</th><th>cause</th><th>times</th></tr>" + "".join(
        f"<tr><td>{t}</td><td>{e(c)}</td><td>{n}</td></tr>" for t, c, n in causes) + "</table>"
                 if causes else "<p>No failures.</p>")
    parts.append("<h2>Sizes over time</h2>")
    for s in summaries.values():
        parts.append(f"<h3>{s.type}</h3>{svg_chart(s.sizes)}")
    parts.append("<h2>Recovery point (incremental backups)</h2>")
    parts.append("<table id='recovery'><tr><th>day</th><th>worst recovery point (minutes)</th></tr>" + "".join(
        f"<tr><td>{day}</td><td>{minutes:.1f}</td></tr>" for day, minutes in (recovery or {}).items()) + "</table>"
                 if recovery else "<p>No incremental backups this quarter: the recovery point is the newest database "
                                  "backup.</p>")
    parts.append("<h2>Restore drills</h2>")
    parts.append("<table><tr><th>time</th><th>result</th><th>restore time (s)</th><th>rows</th><th>objects</th></tr>"
                 + "".join(f"<tr><td>{e(d['time'])}</td><td>{e(d['status'])}</td><td>{d.get('restore_seconds', '')}"
                           f"</td><td>{d.get('rows', '')}</td><td>{d.get('objects', '')}</td></tr>" for d in drills)
                 + "</table>" if drills else "<p class='bad'>No restore drill ran this quarter.</p>")
    parts.append("<h2>Findings</h2>")
    parts.append("<ul>" + "".join(f"<li class='bad'>{e(f)}</li>" for f in findings) + "</ul>" if findings
                 else "<p>No findings.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


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
    return render(quarter, summaries, drills, findings, now, names, recovery), findings
