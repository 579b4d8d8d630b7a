"""The Backups page shows a viewer only the job log lines of DAGs whose runs they may read."""

from __future__ import annotations

from bhv360_backup.api.dashboard import visible_lines


def test_a_viewer_sees_only_the_lines_of_dags_they_may_read():
    lines = [{"dag_id": "bhv360_restore", "error": "restore failed"},
             {"dag_id": "bhv360_database_backup", "error": "pg_dump: connection to db.internal as postgres refused"},
             {"type": "restore:database", "status": "success"}]  # the console command's: no DAG
    assert visible_lines(lines, {"bhv360_restore"}) == [lines[0], lines[2]]
    assert visible_lines(lines, {"bhv360_restore", "bhv360_database_backup"}) == lines
