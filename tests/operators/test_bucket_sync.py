"""The weekly storage backup end to end through Airflow, from the Supabase Storage API."""

from __future__ import annotations

from bhv360_backup.repository.blobs import verify_snapshot_blobs
from bhv360_backup.repository.catalog import list_backups, read_manifest
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.snapshots import read_index
from tests.fixtures.airflow import run_dag

DAG_ID = "bhv360_storage_backup"


def test_storage_backup_through_airflow(backup_env, storage_api):
    storage_api.create_bucket("certificates", allowed_mime_types=["application/pdf"])
    storage_api.put("certificates", "org-1/staff 1/BHV basis.pdf", b"%PDF-1.4 certificate", "application/pdf")
    storage_api.put("certificates", "org-1/staff 2/EHBO.pdf", b"%PDF-1.4 other", "application/pdf")

    run, states = run_dag(DAG_ID)

    assert states == {"sync": "success", "verify": "success", "retention": "success"}
    (backup_id,) = list_backups(backup_env.local, BackupType.STORAGE)
    for location in (backup_env.local, backup_env.cloud):
        manifest = read_manifest(location, BackupType.STORAGE, backup_id)
        assert [e.path for e in read_index(location, manifest)] == ["org-1/staff 1/BHV basis.pdf", "org-1/staff 2/EHBO.pdf"]
        assert verify_snapshot_blobs(location, manifest) == []
    (line,) = [e for e in backup_env.job_log() if e["type"] == "storage"]
    assert line["status"] == "success" and line["stats"]["downloaded"] == 2 and line["objects"] == 2


def test_unconfigured_supabase_connection_is_named(backup_env, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_BHV360_SUPABASE", raising=False)
    run, states = run_dag(DAG_ID)
    assert states["sync"] == "failed"
    (line,) = [e for e in backup_env.job_log() if e["type"] == "storage"]
    assert line["error"].startswith("Airflow connection 'bhv360_supabase' (the Supabase project) is not configured")
    (mail,) = backup_env.smtp.bodies()
    assert "bhv360_supabase" in mail
