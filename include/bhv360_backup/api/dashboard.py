"""The backups dashboard (the plugin's page in the Airflow UI): what the operations team opens every
morning. Per type: the newest backup's state (ok, late, failed) against what its schedule allows, its
size and duration, both locations side by side, links to its run and log; the last drill; the open
health findings; the recovery point; charts of size and duration over the retention window."""

from __future__ import annotations

import html
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from bhv360_backup.charts import CHART_CSS, line_chart
from bhv360_backup.health import MAX_AGE, format_age
from bhv360_backup.inventory import InventoryEntry
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import parse_iso

STYLE = """
:root{--bg:#ffffff;--fg:#1a202c;--muted:#4a5568;--card:#f7fafc;--border:#e2e8f0;--ok:#276749;--ok-bg:#c6f6d5;
--late:#975a16;--late-bg:#fefcbf;--bad:#9b2c2c;--bad-bg:#fed7d7;--link:#2b6cb0}
@media (prefers-color-scheme: dark){:root{--bg:#1a202c;--fg:#edf2f7;--muted:#a0aec0;--card:#2d3748;--border:#4a5568;
--ok:#9ae6b4;--ok-bg:#22543d;--late:#faf089;--late-bg:#744210;--bad:#feb2b2;--bad-bg:#742a2a;--link:#90cdf4}}
body{font-family:Inter,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;background:var(--bg);color:var(--fg);
margin:0;padding:20px 28px;font-size:14px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 10px}.muted{color:var(--muted)}
a{color:var(--link);text-decoration:none}a:hover{text-decoration:underline}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:12px}
.card{background:var(--card);border:1px solid var(--border);border-radius:8px;padding:12px 14px}
.card h3{margin:0 0 8px;font-size:15px;display:flex;justify-content:space-between;align-items:center}
.badge{border-radius:12px;padding:2px 10px;font-size:12px;font-weight:600}
.ok{color:var(--ok);background:var(--ok-bg)}.late{color:var(--late);background:var(--late-bg)}
.failed,.missing{color:var(--bad);background:var(--bad-bg)}
.where{display:grid;grid-template-columns:1fr 1fr;gap:6px;margin-top:8px}
.where div{border:1px solid var(--border);border-radius:6px;padding:4px 8px;font-size:12px}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid var(--border);padding:5px 8px;text-align:left;
font-size:13px}th{color:var(--muted);font-weight:600}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:8px}
.charts svg{width:100%;height:auto}
"""


def run_link(line: Mapping[str, Any] | None, text: str = "run") -> str:
    """A link to a job's DAG run in the Airflow UI, and to its task's log when the line names the task."""
    if not line or not line.get("dag_id") or not line.get("run_id"):
        return ""
    run = f"/dags/{quote(line['dag_id'], safe='')}/runs/{quote(line['run_id'], safe='')}"
    links = [f"<a href='{run}' target='_top'>{text}</a>"]
    if line.get("task_id"):
        links.append(f"<a href='{run}/tasks/{quote(line['task_id'], safe='')}' target='_top'>log</a>")
    return " · ".join(links)


def state_of(backup_type: BackupType, newest: InventoryEntry | None, last_run: Mapping[str, Any] | None,
             now: datetime, max_age: timedelta) -> str:
    """``failed`` when the newest run failed, ``missing`` with no backup, ``late`` past what the schedule
    allows, else ``ok``."""
    if last_run and last_run.get("status") == "failed":
        return "failed"
    if newest is None or not newest.completed_at:
        return "missing"
    return "late" if now - parse_iso(newest.completed_at) > max_age else "ok"


def _card(backup_type: BackupType, entries: Sequence[InventoryEntry], lines: Sequence[Mapping[str, Any]],
          locations: Sequence[str], now: datetime, max_age: timedelta) -> str:
    e = html.escape
    of_type = [entry for entry in entries if entry.type == backup_type.value]
    newest = of_type[-1] if of_type else None
    runs = [line for line in lines if line.get("type") == backup_type.value]
    last_run = runs[-1] if runs else None
    state = state_of(backup_type, newest, last_run, now, max_age)
    parts = [f"<div class='card' data-type='{backup_type.value}'><h3>{backup_type.value}"
             f"<span class='badge {state}'>{state}</span></h3>"]
    if newest is None:
        parts.append("<div class='muted'>no complete backup</div>")
    else:
        age = now - parse_iso(newest.completed_at)
        done = next((line for line in reversed(runs) if line.get("backup_id") == newest.backup_id
                     and line.get("status") == "success"), None)
        duration = f", took {done['duration_s']:.0f} s" if done else ""
        parts.append(f"<div>{e(newest.backup_id)}</div><div class='muted'>{format_age(age)} old (allowed "
                     f"{format_age(max_age)}), {newest.size / 1e6:,.1f} MB{duration}</div>")
        parts.append("<div class='where'>" + "".join(
            f"<div class='{'ok' if newest.locations.get(name) == 'verified' else 'failed'}'>{e(name)}: "
            f"{e(newest.locations.get(name, 'missing'))[:60]}</div>" for name in locations) + "</div>")
    if last_run and last_run.get("status") == "failed":
        parts.append(f"<div class='failed' style='margin-top:6px;padding:4px'>{e(str(last_run.get('error', ''))[:200])}</div>")
    link = run_link(last_run, "newest run")
    parts.append(f"<div style='margin-top:6px'>{link}</div>" if link else "")
    return "".join(parts) + "</div>"


def _drill_card(drills: Sequence[Mapping[str, Any]], now: datetime) -> str:
    if not drills:
        return "<div class='card' data-type='drill'><h3>restore drill<span class='badge missing'>none</span></h3>" \
               "<div class='muted'>no drill has run yet</div></div>"
    last = drills[-1]
    state = "ok" if last["status"] == "success" else "failed"
    age = format_age(now - parse_iso(last["time"]))
    details = (f"restored in {last.get('restore_seconds', '?')} s, {last.get('rows', '?'):,} rows, "
               f"{last.get('objects', '?')} objects" if state == "ok" else html.escape(str(last.get("error", ""))[:200]))
    pit = last.get("point_in_time") or {}
    extra = f"<div class='muted'>point in time {html.escape(str(pit.get('reflects', '')))}</div>" if pit else ""
    return (f"<div class='card' data-type='drill'><h3>restore drill<span class='badge {state}'>"
            f"{'passed' if state == 'ok' else 'failed'}</span></h3><div>{age} ago</div>"
            f"<div class='muted'>{details}</div>{extra}<div>{run_link(last)}</div></div>")


def _recovery_point(entries: Sequence[InventoryEntry], now: datetime) -> str:
    """How much would be lost now: the age of the newest captured change (or of the newest dump)."""
    segments = [entry for entry in entries if entry.type == BackupType.INCREMENTAL.value and entry.completed_at]
    dumps = [entry for entry in entries if entry.type == BackupType.DATABASE.value and entry.completed_at]
    newest = (segments or dumps or [None])[-1]
    if newest is None:
        return "<p id='recovery-point'><span class='badge missing'>no database backup yet</span></p>"
    source = "incremental segment" if segments else "database backup (no incremental segments)"
    return (f"<p id='recovery-point'>Recovery point: <b>{format_age(now - parse_iso(newest.completed_at))}</b> "
            f"<span class='muted'>(newest {source} {html.escape(newest.backup_id)})</span></p>")


def _charts(lines: Sequence[Mapping[str, Any]], now: datetime, window: timedelta) -> str:
    since = now - window
    parts = []
    for backup_type in (BackupType.DATABASE, BackupType.STORAGE, BackupType.FULL, BackupType.CONFIG):
        done = [line for line in lines if line.get("type") == backup_type.value and line.get("status") == "success"
                and parse_iso(line["time"]) >= since]
        failed = [parse_iso(line["time"]) for line in lines if line.get("type") == backup_type.value
                  and line.get("status") == "failed" and parse_iso(line["time"]) >= since]
        sizes = [(parse_iso(line["time"]), float(line.get("bytes") or 0)) for line in done]
        durations = [(parse_iso(line["time"]), float(line.get("duration_s") or 0)) for line in done]
        parts.append(line_chart(sizes, f"{backup_type.value}: size", "bytes", failed))
        parts.append(line_chart(durations, f"{backup_type.value}: duration", "seconds", failed))
    return "<div class='charts'>" + "".join(f"<div>{part}</div>" for part in parts) + "</div>"


def visible_lines(lines: Sequence[Mapping[str, Any]], readable: Collection[str]) -> list[Mapping[str, Any]]:
    """The job log lines a viewer may see: those of DAGs whose runs they may read (a line names hosts,
    users, objects and errors); lines of no DAG (the console command's) go with the restore DAG's right."""
    return [line for line in lines if not line.get("dag_id") or line["dag_id"] in readable]


def render(entries: Sequence[InventoryEntry], locations: Sequence[str], lines: Sequence[Mapping[str, Any]],
           now: datetime, *, max_age: Mapping[BackupType, timedelta | None] | None = None,
           window: timedelta = timedelta(days=30)) -> str:
    """The page: ``entries`` from the inventory, ``lines`` from the job log."""
    e = html.escape
    ages = {**MAX_AGE, **(max_age or {})}
    drills = [line for line in lines if line.get("type") == "drill"]
    health = [line for line in lines if line.get("type") == "health"]
    parts = ["<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
             f"<title>BHV360 backups</title><style>{STYLE}{CHART_CSS}</style></head><body>",
             "<h1>BHV360 backups</h1>",
             f"<div class='muted'>As of {e(now.isoformat(timespec='seconds'))}; locations: {e(', '.join(locations))}</div>",
             _recovery_point(entries, now), "<h2>State</h2><div class='cards' id='state'>"]
    parts += [_card(t, entries, lines, locations, now, ages[t]) for t in BackupType if ages.get(t) is not None]
    parts.append(_drill_card(drills, now) + "</div>")
    findings = health[-1].get("findings", []) if health else []
    parts.append("<h2>Open health findings</h2>")
    if not health:
        parts.append("<p class='muted'>the health check has not run yet</p>")
    elif findings:
        parts.append(f"<ul id='findings'>{''.join(f'<li>{e(f)}</li>' for f in findings)}</ul><p>{run_link(health[-1])}</p>")
    else:
        parts.append(f"<p id='findings'><span class='badge ok'>none</span> {run_link(health[-1], 'last check')}</p>")
    parts.append(f"<h2>Size and duration, last {window.days} days</h2>{_charts(lines, now, window)}")
    parts.append("<h2>Inventory</h2><table id='inventory'><tr><th>type</th><th>backup</th><th>completed</th>"
                 "<th>size</th>" + "".join(f"<th>{e(name)}</th>" for name in locations) + "</tr>")
    for entry in reversed(entries[-200:]):
        parts.append(f"<tr><td>{entry.type}</td><td>{e(entry.backup_id)}</td><td>{e(entry.completed_at)}</td>"
                     f"<td>{entry.size / 1e6:,.2f} MB</td>" + "".join(
                         f"<td class='{'ok' if entry.locations.get(n) == 'verified' else 'failed'}'>"
                         f"{e(entry.locations.get(n, 'missing'))[:40]}</td>" for n in locations) + "</tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)
