"""`make demo` from a fresh folder: a short story, every step green, under 40 lines."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.server
def test_the_demo_tells_a_short_story(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PG"))}
    result = subprocess.run([sys.executable, "-m", "bhv360_backup.demo"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert len(lines) < 40, result.stdout
    assert not any("[info" in line or "::group::" in line for line in lines), "Airflow's records reached the terminal"
    story = result.stdout
    assert "database backup" in story and "verified in local and s3" in story
    assert "0 copied and 282 reused" in story  # the second storage run transfers nothing
    assert "the restored database has drill_due: the planned drill, not yet incident mode" in story
    assert (tmp_path / ".demo" / "airflow.log").stat().st_size > 10_000
