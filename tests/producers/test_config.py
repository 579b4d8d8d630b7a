"""The Supabase project's configuration in a config backup: secret values only in the encrypted
artifact, digests and unencrypted secrets as manual steps, function bodies hashed, same project same bytes."""

from __future__ import annotations

import json

from bhv360_backup.demo.management_api import FUNCTION_BODY, PROJECT_SECRETS, SMTP_PASS_DIGEST, SOURCE_REF
from bhv360_backup.repository.config import PROJECT_SECRETS_ARTIFACT, encode, project_fields
from bhv360_backup.repository.verify import read_checked_artifact
from tests.conftest import AGE_IDENTITY
from tests.fixtures.management_api import backup_project


def test_secret_values_are_only_in_the_encrypted_artifact(management_api, tmp_path):
    location, manifest, project = backup_project(management_api, tmp_path, "20261204T020000Z", (AGE_IDENTITY.to_public(),))
    auth = project.section["auth"]
    assert auth["external_google_secret"]["secret"] == "set" and "fingerprint" in auth["external_google_secret"]
    assert auth["external_github_secret"] == {"secret": "unset"}
    assert auth["site_url"] == "https://app.bhv360.nl" and auth["external_google_client_id"] == "google-id"
    assert all(value not in encode(project.section).decode() for value in PROJECT_SECRETS.values())
    stored = json.loads(read_checked_artifact(location, manifest, PROJECT_SECRETS_ARTIFACT, [AGE_IDENTITY]))
    assert stored["auth"]["external_google_secret"] == PROJECT_SECRETS["Google client secret"]
    assert stored["postgrest"]["jwt_secret"] == PROJECT_SECRETS["PostgREST JWT secret"]
    assert stored["auth"]["smtp_pass"] == SMTP_PASS_DIGEST  # exactly what the API returned
    (function,) = project.section["functions"]
    assert read_checked_artifact(location, manifest, function["body"]["artifact"], [AGE_IDENTITY]) == FUNCTION_BODY
    steps = "\n".join(project.manual_steps)
    assert f"auth.smtp_pass: set it by hand (the API gives only its digest, sha256 {SMTP_PASS_DIGEST})" in steps
    assert "auth.hook_send_email_secrets" in steps and "secret RESEND_API_KEY" in steps
    assert "external_google_secret" not in steps  # its value is kept: applied, not typed in


def test_without_encryption_secret_values_are_left_out_and_listed_as_manual_steps(management_api, tmp_path):
    location, manifest, project = backup_project(management_api, tmp_path, "20261204T020000Z")
    assert project.secrets == {} and PROJECT_SECRETS_ARTIFACT not in {a.path for a in manifest.artifacts}
    steps = "\n".join(project.manual_steps)
    assert "auth.external_google_secret: set it by hand (backups are not encrypted" in steps
    assert "postgrest.jwt_secret" in steps


def test_an_unchanged_project_gives_the_same_bytes_and_a_change_shows_by_field(management_api, tmp_path):
    _, _, first = backup_project(management_api, tmp_path / "a", "20261204T020000Z")
    _, _, second = backup_project(management_api, tmp_path / "b", "20261204T030000Z")
    assert encode(first.section) == encode(second.section)
    management_api.projects[SOURCE_REF]["auth"]["external_google_secret"] = "rotated-value"
    _, _, third = backup_project(management_api, tmp_path / "c", "20261204T040000Z")
    before = project_fields({k: v for k, v in first.section.items() if k != "source"})
    after = project_fields({k: v for k, v in third.section.items() if k != "source"})
    assert {field for field in before if before[field] != after[field]} == {"auth.external_google_secret"}


def test_a_project_without_saml_is_backed_up_with_no_sso_providers(management_api, tmp_path):
    """The API answers 404 ("SAML 2.0 support is not enabled") to a project without SAML: most projects."""
    management_api.projects[SOURCE_REF]["saml_enabled"] = False
    _, _, project = backup_project(management_api, tmp_path, "20261204T020000Z")
    assert project.section["sso_providers"] == {"items": [], "saml_enabled": False}
