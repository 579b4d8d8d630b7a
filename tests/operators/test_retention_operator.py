"""RetentionOperator.execute with fakes for Airflow's side: the rendered template fields it gets."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bhv360_backup.errors import ConfigurationError
from bhv360_backup.locations import LocalLocation
from bhv360_backup.operators import retention as operator_module
from bhv360_backup.operators.retention import RetentionOperator
from bhv360_backup.repository.catalog import list_backups, write_manifest
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import utc_now
from bhv360_backup.settings import Settings
from tests.locations.conftest import make_manifest


@pytest.fixture
def old_backups(tmp_path, monkeypatch):
    location = LocalLocation(tmp_path / "backups")
    ids = []
    for days in (40, 35, 3, 2, 1):
        completed = utc_now() - timedelta(days=days)
        backup_id = completed.strftime("%Y%m%dT%H%M%SZ")
        location.put_bytes(f"database/{backup_id}/database.dump", b"x")
        write_manifest(location, make_manifest(backup_id, completed))
        ids.append(backup_id)
    settings = Settings.load(lambda name, default: {"bhv360_log_dir": str(tmp_path / "logs")}.get(name, default))
    monkeypatch.setattr(operator_module, "load_settings", lambda: settings)
    monkeypatch.setattr(operator_module, "open_locations", lambda settings, conn_id: [location])
    return location, ids


def run(dry_run):
    operator = RetentionOperator(task_id="retention", backup_type="database")
    operator.dry_run = dry_run  # what rendering the template field leaves
    return operator.execute({"run_id": "manual__test"})


@pytest.mark.parametrize("rendered", [False, "False", "false", " 0 "])
def test_a_rendered_false_deletes(old_backups, rendered):
    location, ids = old_backups
    result = run(rendered)
    assert sorted(result["local"]["deleted"]) == ids[:2]
    assert list_backups(location, BackupType.DATABASE) == ids[2:]


@pytest.mark.parametrize("rendered", [True, "True", "yes"])
def test_a_rendered_true_only_reports(old_backups, rendered):
    location, ids = old_backups
    run(rendered)
    assert list_backups(location, BackupType.DATABASE) == ids


def test_a_rendered_value_that_is_not_a_boolean_is_refused(old_backups):
    with pytest.raises(ConfigurationError, match="dry_run must be true or false, got 'maybe'"):
        run("maybe")
