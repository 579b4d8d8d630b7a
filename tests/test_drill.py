"""The drill's look at the live Supabase project: what changed in the dashboard since the newest config backup."""

from __future__ import annotations

from bhv360_backup.drill import project_drift
from bhv360_backup.sources.supabase_management import ManagementAPI
from tests.fixtures.management_api import SOURCE_REF, TOKEN, backup_project


def test_settings_changed_in_the_dashboard_since_the_newest_config_backup_are_drift(management_api, tmp_path):
    location, manifest, _ = backup_project(management_api, tmp_path, "20261204T020000Z")
    with ManagementAPI(management_api.url, TOKEN, SOURCE_REF) as api:
        assert project_drift({"local": location}, api)["drift"] == {}
        management_api.projects[SOURCE_REF]["auth"].update(site_url="https://elsewhere.example", smtp_pass="0" * 64)
        management_api.projects[SOURCE_REF]["secrets"].append({"name": "NEW_KEY", "value": "1" * 64})
        drift = project_drift({"local": location}, api)
    assert drift["config_backup"] == manifest.backup_id
    assert drift["drift"] == {"auth.site_url": "changed", "auth_digests.smtp_pass": "changed", "secrets[NEW_KEY]": "added"}
