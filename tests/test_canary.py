"""The secret canary itself: it finds a secret wherever it is put, so its silence means something."""

from __future__ import annotations

import gzip
import subprocess
import sys

from tests.conftest import AGE_IDENTITY, AIRFLOW_HOME, CHILD_ARGV, TASK_LOGS
from tests.fixtures.canary import LeakWatch, scan

PLANTED = "canary-self-test-" + str(AGE_IDENTITY.to_public())[-12:]  # not a suite secret itself


def planted_leaks(tmp_path, plant) -> list[str]:
    watch = LeakWatch(CHILD_ARGV, TASK_LOGS, AIRFLOW_HOME / "airflow.db")
    plant()
    return scan({"planted": PLANTED}, watch.places([tmp_path], {}))


def test_a_secret_in_a_job_log_or_a_compressed_index_is_found(tmp_path):
    def plant():
        (tmp_path / "logs").mkdir()
        (tmp_path / "logs" / "jobs.jsonl").write_text(f'{{"error": "{PLANTED}"}}\n')
        (tmp_path / "objects.jsonl.gz").write_bytes(gzip.compress(f'{{"path": "{PLANTED}"}}\n'.encode()))

    assert sorted(planted_leaks(tmp_path, plant)) == sorted([f"planted in {tmp_path / 'logs' / 'jobs.jsonl'}",
                                                             f"planted in {tmp_path / 'objects.jsonl.gz'}"])


def test_a_secret_in_the_argv_of_a_grandchild_is_found(tmp_path):
    """As pg_dump started by an `airflow tasks test` child, or by the api-server."""
    def plant():
        subprocess.run([sys.executable, "-c", f"import subprocess; subprocess.run(['true', '{PLANTED}'])"], check=True)

    assert planted_leaks(tmp_path, plant) == ["planted in argv of child processes"]
    grandchild = [line for line in CHILD_ARGV.since(0) if line.endswith(f"true {PLANTED}")]
    assert grandchild, "the grandchild's argv was not recorded"


def test_a_secret_in_a_task_log_line_is_found(tmp_path):
    assert planted_leaks(tmp_path, lambda: TASK_LOGS.lines.append(f"INFO something {PLANTED}")) == [
        "planted in task logs"]


def test_what_leaked_before_the_test_began_is_not_its_fault(tmp_path):
    (tmp_path / "old.log").write_text(PLANTED)
    import os
    import time

    os.utime(tmp_path / "old.log", (time.time() - 60, time.time() - 60))
    assert planted_leaks(tmp_path, lambda: None) == []
