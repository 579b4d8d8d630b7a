"""The backups dashboard: the state of every type in every location at a glance."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bhv360_backup.audit import svg_chart
from bhv360_backup.health import MAX_AGE, format_age
from bhv360_backup.inventory import InventoryEntry
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import parse_iso

# green up to the schedule's interval plus a margin, amber up to the health check's limit, red beyond
GREEN_SHARE = 0.9


def freshness(backup_type: BackupType, completed_at: str | None, now: datetime) -> str:
    if not completed_at:
        return "red"
    age = now - parse_iso(completed_at)
    if age <= MAX_AGE[backup_type] * GREEN_SHARE:
        return "green"
    return "amber" if age <= MAX_AGE[backup_type] else "red"


def recovery_point(entries: Sequence[InventoryEntry], now: datetime) -> str:
    """How much would be lost now: the age of the newest captured change (or of the newest dump)."""
    segments = [entry for entry in entries if entry.type == BackupType.INCREMENTAL.value and entry.completed_at]
    dumps = [entry for entry in entries if entry.type == BackupType.DATABASE.value and entry.completed_at]
    newest = (segments or dumps or [None])[-1]
    if newest is None:
        return "<p id='recovery-point' class='red'>Recovery point: no database backup yet</p>"
    age = now - parse_iso(newest.completed_at)
    color = freshness(BackupType(newest.type), newest.completed_at, now)
    source = "incremental segment" if segments else "database backup (no incremental segments)"
    return (f"<p id='recovery-point' class='{color}'>Recovery point: {format_age(age)} "
            f"(newest {source} {html.escape(newest.backup_id)})</p>")


def render(entries: Sequence[InventoryEntry], locations: Sequence[str], drills: Sequence[dict[str, Any]],
           now: datetime) -> str:
    e = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>BHV360 backups</title><style>",
             "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1.5em}",
             "td,th{border:1px solid #ccc;padding:4px 8px}.green{background:#d5f5e3}.amber{background:#fdebd0}",
             ".red{background:#fadbd8}</style></head><body><h1>BHV360 backups</h1>",
             f"<p>As of {e(now.isoformat(timespec='seconds'))}</p>",
             recovery_point(entries, now),
             "<h2>Newest backup per type and location</h2><table id='state'><tr><th>type</th><th>location</th>"
             "<th>newest</th><th>age</th><th>size</th><th>verification</th></tr>"]
    for backup_type in BackupType:
        of_type = [entry for entry in entries if entry.type == backup_type.value]
        for location in locations:
            present = [entry for entry in of_type if entry.locations.get(location, "missing") != "missing"]
            if not present:
                parts.append(f"<tr class='red'><td>{backup_type.value}</td><td>{location}</td>"
                             "<td colspan='4'>no complete backup</td></tr>")
                continue
            newest = present[-1]
            state = newest.locations[location]
            color = freshness(backup_type, newest.completed_at, now)
            if state != "verified":
                color = "red"
            parts.append(f"<tr class='{color}' data-type='{backup_type.value}' data-location='{location}'>"
                         f"<td>{backup_type.value}</td><td>{location}</td><td>{e(newest.backup_id)}</td>"
                         f"<td>{format_age(now - parse_iso(newest.completed_at))}</td><td>{newest.size:,}</td><td>{e(state)}</td></tr>")
    parts.append("</table><h2>Sizes over time</h2>")
    for backup_type in BackupType:
        points = [(entry.completed_at, entry.size) for entry in entries if entry.type == backup_type.value]
        parts.append(f"<h3>{backup_type.value}</h3>{svg_chart(points)}")
    parts.append("<h2>Restore drills</h2>")
    if drills:
        parts.append("<table id='drills'><tr><th>time</th><th>result</th><th>restore time (s)</th><th>rows</th>"
                     "<th>objects</th></tr>")
        for drill in drills[-10:][::-1]:
            color = "green" if drill["status"] == "success" else "red"
            parts.append(f"<tr class='{color}'><td>{e(drill['time'])}</td><td>{e(drill['status'])}</td>"
                         f"<td>{drill.get('restore_seconds', '')}</td><td>{drill.get('rows', '')}</td>"
                         f"<td>{drill.get('objects', '')}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p class='red'>No restore drill has run yet.</p>")
    parts.append("<h2>Inventory</h2><table id='inventory'><tr><th>type</th><th>backup id</th><th>completed</th>"
                 "<th>size</th><th>locations</th></tr>")
    for entry in reversed(entries):
        where = ", ".join(f"{name}: {state}" for name, state in sorted(entry.locations.items()))
        parts.append(f"<tr class='{'green' if entry.verified else 'red'}'><td>{entry.type}</td>"
                     f"<td>{e(entry.backup_id)}</td><td>{e(entry.completed_at)}</td><td>{entry.size:,}</td>"
                     f"<td>{e(where)}</td></tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)
