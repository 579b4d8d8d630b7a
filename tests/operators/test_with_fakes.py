"""Operators' execute() with fakes for Airflow's side (settings, locations, a context), as the amazon
provider's operator tests do: what each operator hands to the package and returns, in the fast tier."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from bhv360_backup import joblog
from bhv360_backup.errors import IntegrityError
from bhv360_backup.locations import LocalLocation
from bhv360_backup.operators import base as base_module
from bhv360_backup.operators import bucket_sync as bucket_sync_module
from bhv360_backup.operators import health as health_module
from bhv360_backup.operators import verify as verify_module
from bhv360_backup.operators.bucket_sync import BucketSyncOperator
from bhv360_backup.operators.health import BackupHealthOperator
from bhv360_backup.operators.verify import VerifyBackupOperator
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.settings import Settings
from bhv360_backup.sources.storage import LocalFolderSource

DUE = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)


def context(run_id="scheduled__2026-11-22T02:00:00+00:00", run_type="scheduled"):
    return {"run_id": run_id, "dag_run": SimpleNamespace(run_after=DUE, run_id=run_id, run_type=run_type)}


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    """The local location alone, settings from a dict, and a folder of buckets as the storage source."""
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_INCREMENTAL_INTERVAL_MINUTES", "0")
    location = LocalLocation(tmp_path / "backups")
    settings = Settings.load(lambda name, default: {"bhv360_log_dir": str(tmp_path / "logs"),
                                                    "bhv360_backup_root": str(tmp_path / "backups")}.get(name, default))
    for module in (base_module, verify_module, health_module):
        monkeypatch.setattr(module, "load_settings", lambda: settings)
        monkeypatch.setattr(module, "open_locations", lambda settings, conn_id: [location])
    for module in (base_module, health_module):
        monkeypatch.setattr(module, "job_log_dir", lambda: settings.log_dir)
    buckets = tmp_path / "buckets"
    (buckets / "certificates" / "org-1").mkdir(parents=True)
    (buckets / "certificates" / "org-1" / "BHV basis.pdf").write_bytes(b"%PDF basis")
    (buckets / "floor-plans").mkdir()
    (buckets / "floor-plans" / "verdieping 1.png").write_bytes(b"\x89PNG plan")
    monkeypatch.setattr(bucket_sync_module, "storage_source", lambda settings, spec=None: LocalFolderSource(buckets))
    return SimpleNamespace(location=location, settings=settings, buckets=buckets)


def test_the_storage_operator_snapshots_with_the_runs_backup_id_and_logs_it(fakes):
    summary = BucketSyncOperator(task_id="sync").execute(context())
    assert summary["backup_id"] == "20261122T020000Z" and summary["type"] == "storage"
    assert summary["objects"] == 2 and summary["stats"]["downloaded"] == 2
    (line,) = joblog.read(fakes.settings.log_dir, "storage")
    assert line["status"] == "success" and line["locations"] == ["local"] and line["backup_id"] == "20261122T020000Z"


def test_a_manual_run_gets_an_id_of_its_own(fakes):
    summary = BucketSyncOperator(task_id="sync").execute(context("manual__2026-11-22T02:00:00", "manual"))
    assert summary["backup_id"].startswith("20261122T020000Z-m")


def test_the_verify_operator_fails_naming_the_damaged_artifact(fakes):
    BucketSyncOperator(task_id="sync").execute(context())
    assert VerifyBackupOperator(task_id="verify", backup_type="storage", deep=True).execute(context())["verified_in"] \
        == ["local"]
    index = fakes.location.path_of("storage/20261122T020000Z/objects.jsonl.gz")
    index.write_bytes(index.read_bytes()[:-4])
    with pytest.raises(IntegrityError, match="objects.jsonl.gz"):
        VerifyBackupOperator(task_id="verify", backup_type="storage").execute(context())


def test_the_health_operator_records_what_it_read(fakes):
    BucketSyncOperator(task_id="sync").execute(context())
    with pytest.raises(Exception, match="health finding"):  # no database backup, no drill yet
        BackupHealthOperator(task_id="check").execute(context())
    (line,) = joblog.read(fakes.settings.log_dir, "health")
    assert line["status"] == "failed" and line["deep_checked"]["local"]["storage"] == ["20261122T020000Z"]
    assert line["blobs_read"]["local"] == 2
    assert any("database @ local: no complete backup" in finding for finding in line["findings"])
    assert BackupType.STORAGE.value in line["deep_checked"]["local"]

