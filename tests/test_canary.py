"""The secret canary itself: it finds a secret wherever it is put, so its silence after the suite means something."""

from __future__ import annotations

import subprocess

from tests.conftest import AGE_IDENTITY, CHILD_ARGV
from tests.fixtures.canary import scan


def test_the_canary_finds_a_secret_in_a_file_a_log_line_and_a_childs_argv(tmp_path):
    planted = "canary-self-test-" + str(AGE_IDENTITY.to_public())[-12:]  # not a suite secret itself
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "jobs.jsonl").write_text(f'{{"error": "{planted}"}}\n')
    subprocess.run(["true", planted], check=True)
    leaks = scan({"planted": planted}, [tmp_path], tmp_path / "no.db",
                 {"task logs": [f"INFO something {planted}"], "argv of child processes": CHILD_ARGV.seen})
    assert sorted(leaks) == sorted([f"planted in {tmp_path / 'logs' / 'jobs.jsonl'}", "planted in task logs",
                                    "planted in argv of child processes"])
    (tmp_path / "logs" / "jobs.jsonl").unlink()
