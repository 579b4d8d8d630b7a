"""The job log: one JSON object per line for every backup, retention, restore and drill run."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bhv360_backup.errors import ConfigurationError
from bhv360_backup.repository.manifest import iso, utc_now

log = logging.getLogger(__name__)

JOB_LOG_NAME = "jobs.jsonl"
ALERT, ALERT_RESOLVED = "alert", "alert_resolved"  # the types of the lines that track open alerts


def append(log_dir: Path, record: dict[str, Any]) -> None:
    """Append one line; a single ``write`` on an ``O_APPEND`` file keeps concurrent lines whole."""
    try:
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        fd = os.open(log_dir / JOB_LOG_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as error:
        raise ConfigurationError(f"cannot write the job log in {log_dir} (variable bhv360_log_dir): {error}") from None


def read(log_dir: Path, job_type: str | None = None) -> list[dict[str, Any]]:
    """The job log's entries, oldest first; only those of ``job_type`` when given."""
    path = log_dir / JOB_LOG_NAME
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [entry for entry in entries if job_type is None or entry.get("type") == job_type]


def now() -> str:
    return iso(utc_now())


def _lines_with(log_dir: Path, *fragments: str) -> Iterator[dict[str, Any]]:
    """The entries whose raw line holds every fragment, oldest first (cheap on a long log)."""
    path = log_dir / JOB_LOG_NAME
    if not path.exists():
        return
    with path.open() as lines:
        for line in lines:
            if all(fragment in line for fragment in fragments) and line.strip():
                yield json.loads(line)


def newest(log_dir: Path, *, dag_id: str, run_id: str, task_id: str) -> dict[str, Any] | None:
    """The newest entry a task of this run wrote (alert lines aside)."""
    found = None
    for entry in _lines_with(log_dir, json.dumps(dag_id), json.dumps(run_id), json.dumps(task_id)):
        if (entry.get("dag_id"), entry.get("run_id"), entry.get("task_id")) == (dag_id, run_id, task_id) \
                and entry.get("type") not in (ALERT, ALERT_RESOLVED):
            found = entry
    return found


def open_alerts(log_dir: Path, dag_id: str, task_id: str) -> list[dict[str, Any]]:
    """The alerts about this task since its last "resolved" line, oldest first."""
    alerts: list[dict[str, Any]] = []
    for entry in _lines_with(log_dir, '"alert', json.dumps(dag_id), json.dumps(task_id)):
        if (entry.get("dag_id"), entry.get("task_id")) != (dag_id, task_id):
            continue
        if entry.get("type") == ALERT:
            alerts.append(entry)
        elif entry.get("type") == ALERT_RESOLVED:
            alerts = []
    return alerts


@dataclass
class JobRecord:
    """What a running job reports; filled in while it works, written when it ends."""

    dag_id: str
    run_id: str
    type: str
    backup_id: str | None = None
    bytes: int = 0
    locations: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    task_id: str | None = None  # with the run id, links the line to its task's log in the UI


@contextlib.contextmanager
def job(log_dir: Path, record: JobRecord) -> Iterator[JobRecord]:
    """Write the record's line when the block ends: ``success``, or ``failed`` with the error.

    A failure to write the log never hides the job's own error.
    """
    started = time.monotonic()

    def line(status: str, error: BaseException | None) -> dict[str, Any]:
        entry = {
            "time": now(),
            "dag_id": record.dag_id,
            "run_id": record.run_id,
            "type": record.type,
            "backup_id": record.backup_id,
            "status": status,
            "duration_s": round(time.monotonic() - started, 3),
            "bytes": record.bytes,
            "locations": record.locations,
            **({"task_id": record.task_id} if record.task_id else {}),
            **record.extra,
        }
        if error is not None:
            entry["error"] = str(error).strip() or type(error).__name__
        return entry

    try:
        yield record
    except BaseException as error:
        try:
            append(log_dir, line("failed", error))
        except ConfigurationError as log_error:
            log.error("%s", log_error)
        raise
    append(log_dir, line("success", None))
