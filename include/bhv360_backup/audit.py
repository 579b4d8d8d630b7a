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

from bhv360_backup.errors import BackupError
from bhv360_backup.full import protected_components
from bhv360_backup.layout import BackupType
from bhv360_backup.locations.base import Location
from bhv360_backup.manifest import parse_iso
from bhv360_backup.retention import RetentionPolicy

# weekday() of the weekly backups: Sunday (storage) and Saturday (full)
SCHEDULE_DAYS = {BackupType.DATABASE: None, BackupType.CONFIG: None, BackupType.STORAGE: 6, BackupType.FULL: 5}


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
    type: str
    expected: int
    taken: int
    failed: int
    causes: Counter = field(default_factory=Counter)
    sizes: list[tuple[str, int]] = field(default_factory=list)


def summarise(lines: Sequence[dict[str, Any]], quarter: Quarter) -> dict[str, TypeSummary]:
    summaries = {t.value: TypeSummary(t.value, expected_runs(t, quarter), 0, 0) for t in BackupType}
    for line in lines:
        summary = summaries.get(line.get("type"))
        if summary is None or not quarter.contains(parse_iso(line["time"])):
            continue
        if line["status"] == "success":
            summary.taken += 1
            summary.sizes.append((line["time"], int(line.get("bytes") or 0)))
        else:
            summary.failed += 1
            summary.causes[str(line.get("error", "unknown")).splitlines()[0][:160]] += 1
    return summaries


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
           findings: Sequence[str], generated: datetime) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>BHV360 backup audit {quarter.name}</title>"
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #999;padding:4px 8px;text-align:left}.bad{color:#b03a2e}</style></head><body>",
             f"<h1>BHV360 backup audit {quarter.name}</h1>",
             f"<p>{quarter.start} to {quarter.end - timedelta(days=1)}; generated {e(generated.isoformat())}</p>",
             "<h2>Backups taken against the schedule</h2><table><tr><th>type</th><th>expected</th><th>taken</th>"
             "<th>failed runs</th><th>coverage</th></tr>"]
    for s in summaries.values():
        coverage = s.taken / s.expected if s.expected else 0
        parts.append(f"<tr><td>{s.type}</td><td>{s.expected}</td><td>{s.taken}</td><td>{s.failed}</td>"
                     f"<td class=\"{'bad' if coverage < 1 else ''}\">{coverage:.0%}</td></tr>")
    parts.append("</table><h2>Failures and their causes</h2>")
    causes = [(s.type, cause, n) for s in summaries.values() for cause, n in s.causes.most_common()]
    parts.append("<table><tr><th>type</th><th>cause</th><th>times</th></tr>" + "".join(
        f"<tr><td>{t}</td><td>{e(c)}</td><td>{n}</td></tr>" for t, c, n in causes) + "</table>"
                 if causes else "<p>No failures.</p>")
    parts.append("<h2>Sizes over time</h2>")
    for s in summaries.values():
        parts.append(f"<h3>{s.type}</h3>{svg_chart(s.sizes)}")
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
                 policy: RetentionPolicy, now: datetime) -> tuple[str, list[str]]:
    """The HTML report and its findings."""
    summaries = summarise(lines, quarter)
    drills = [line for line in lines if line.get("type") == "drill" and quarter.contains(parse_iso(line["time"]))]
    findings = [f"{s.type}: {s.taken} of {s.expected} scheduled backups taken" for s in summaries.values()
                if s.taken < s.expected]
    if not drills:
        findings.append("no restore drill ran this quarter")
    findings += [f"restore drill at {d['time']} failed: {str(d.get('error', ''))[:160]}" for d in drills
                 if d["status"] != "success"]
    findings += retention_findings(locations, policy, now)
    return render(quarter, summaries, drills, findings, now), findings
