"""PostgreSQL client plumbing without a server: child-process streams and their errors."""

from __future__ import annotations

import os

import pytest

from bhv360_backup.errors import BackupError
from bhv360_backup.postgres.client import ChildProcessStream


def test_a_child_killed_by_a_signal_says_which_signal():
    stream = ChildProcessStream(["sh", "-c", "printf partial; kill -9 $$"], dict(os.environ), "pg_dump")
    with pytest.raises(BackupError) as raised:
        list(stream)
    assert str(raised.value).startswith("pg_dump was killed by signal SIGKILL (9)")
    assert "exit code -9" not in str(raised.value)


def test_a_child_that_fails_keeps_its_own_message():
    stream = ChildProcessStream(["sh", "-c", "echo 'pg_dump: error: no such table' >&2; exit 1"], dict(os.environ),
                                "pg_dump")
    with pytest.raises(BackupError, match=r"pg_dump failed \(exit 1\): pg_dump: error: no such table"):
        list(stream)
