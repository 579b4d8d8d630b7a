"""A config backup's Supabase project applied to an empty project through the Management API stand-in:
settings, secrets from the encrypted artifact and functions equal afterwards; what only an operator can
set is named; a failure part-way says what was applied, and a rerun converges."""

from __future__ import annotations

import json

import pytest

from bhv360_backup.demo.management_api import (
    FUNCTION_BODY,
    PROJECT_SECRETS,
    SSO_ENTITY_ID,
    TARGET_REF,
    THIRD_PARTY_ISSUER,
    TOKEN,
)
from bhv360_backup.errors import BackupError
from bhv360_backup.repository.config import PROJECT_SECRETS_ARTIFACT
from bhv360_backup.repository.verify import read_checked_artifact
from bhv360_backup.restore.project import apply_project, backup_state, differences, read_state
from bhv360_backup.sources.supabase_management import ManagementAPI
from tests.conftest import AGE_IDENTITY
from tests.fixtures.management_api import backup_project


@pytest.fixture
def backup(management_api, tmp_path):
    location, manifest, project = backup_project(management_api, tmp_path, "20261204T020000Z",
                                                 (AGE_IDENTITY.to_public(),))
    secrets = json.loads(read_checked_artifact(location, manifest, PROJECT_SECRETS_ARTIFACT, [AGE_IDENTITY]))
    body_of = lambda artifact: [read_checked_artifact(location, manifest, artifact, [AGE_IDENTITY])]  # noqa: E731
    return project.section, secrets, body_of, project.manual_steps


@pytest.fixture
def new_project(management_api):
    management_api.add_project(TARGET_REF)
    with ManagementAPI(management_api.url, TOKEN, TARGET_REF, sleep=lambda seconds: None) as api:
        yield api


def test_an_empty_project_equals_the_backup_after_the_apply(management_api, backup, new_project):
    section, secrets, body_of, steps = backup
    settings, _ = differences(backup_state(section), read_state(new_project))
    assert {"auth.site_url", "auth.external_google_secret", "functions.notify-team"} <= set(settings), settings

    report = apply_project(section, secrets, new_project, body_of, manual_steps=steps)

    assert differences(backup_state(section), read_state(new_project))[0] == {}
    target = management_api.projects[TARGET_REF]
    assert target["auth"]["external_google_secret"] == PROJECT_SECRETS["Google client secret"]
    assert target["auth"]["site_url"] == "https://app.bhv360.nl" and target["auth"]["disable_signup"] is True
    assert target["functions"]["notify-team"]["body"] == FUNCTION_BODY
    assert report.functions_deployed == ["notify-team"] and "auth" in report.applied
    steps = "\n".join(report.manual_steps)
    assert "auth.smtp_pass" in steps and "secret RESEND_API_KEY" in steps and "postgrest.jwt_secret" in steps
    assert target["auth"]["smtp_pass"] != management_api.projects["bhvthreesixtysourcea"]["auth"]["smtp_pass"]
    assert [item["oidc_issuer_url"] for item in target["third_party_auth"]] == [THIRD_PARTY_ISSUER]
    (provider,) = target["sso_providers"]["items"]
    assert provider["saml"]["entity_id"] == SSO_ENTITY_ID and [d["domain"] for d in provider["domains"]] == ["bhv360.nl"]
    assert {"third_party_auth." + THIRD_PARTY_ISSUER, "sso_providers." + SSO_ENTITY_ID} <= set(report.applied)


def test_sign_in_integrations_are_updated_in_place_and_one_only_the_target_has_fails_the_read_back(
        management_api, backup, new_project):
    section, secrets, body_of, steps = backup
    apply_project(section, secrets, new_project, body_of, manual_steps=steps)
    target = management_api.projects[TARGET_REF]
    target["sso_providers"]["items"][0]["domains"] = []  # changed in the target's dashboard
    report = apply_project(section, secrets, new_project, body_of, manual_steps=steps)
    assert report.applied == ["sso_providers." + SSO_ENTITY_ID]
    assert [d["domain"] for d in target["sso_providers"]["items"][0]["domains"]] == ["bhv360.nl"]

    management_api.add_third_party_auth(TARGET_REF, "https://login.someone-else.example")
    with pytest.raises(BackupError, match=r"third_party_auth.https://login.someone-else.example \(only on the target\)"):
        apply_project(section, secrets, new_project, body_of, manual_steps=steps)
    assert len(target["third_party_auth"]) == 2  # a way to sign in is never removed by a restore


def test_a_failure_part_way_names_what_was_applied_and_a_rerun_converges(management_api, backup, new_project):
    section, secrets, body_of, steps = backup
    management_api.fail_after_writes = 1
    with pytest.raises(BackupError, match=r"stopped at postgrest .*applied auth; not applied postgrest"):
        apply_project(section, secrets, new_project, body_of, manual_steps=steps)
    management_api.fail_after_writes = None
    management_api.throttled[("PATCH", "/v1/projects/{ref}/postgrest")] = 1  # and a 429 on the way
    report = apply_project(section, secrets, new_project, body_of, manual_steps=steps)
    assert "auth" not in report.applied and "postgrest" in report.applied  # only what still differed
    assert differences(backup_state(section), read_state(new_project))[0] == {}


def test_a_target_without_saml_gets_everything_else_and_the_step_that_enables_it(management_api, backup):
    section, secrets, body_of, steps = backup
    management_api.add_project(TARGET_REF)["saml_enabled"] = False
    with ManagementAPI(management_api.url, TOKEN, TARGET_REF, sleep=lambda seconds: None) as api, \
            pytest.raises(BackupError, match=r"sso_providers.*SAML 2.0 support is not enabled") as stopped:
        apply_project(section, secrets, api, body_of, manual_steps=steps)
    target = management_api.projects[TARGET_REF]
    assert target["functions"]["notify-team"]["body"] == FUNCTION_BODY  # applied before the providers
    assert "applied auth" in str(stopped.value) and "third_party_auth" in str(stopped.value)
