"""The Management API client against the stand-in held to the published description: retries, and
errors that name what is wrong."""

from __future__ import annotations

import pytest

from bhv360_backup.demo.management_api import SOURCE_REF, TOKEN
from bhv360_backup.errors import ConfigurationError
from bhv360_backup.sources.supabase_management import READS, ManagementAPI


def client(stand_in, token=TOKEN, sleeps=None):
    return ManagementAPI(stand_in.url, token, SOURCE_REF, sleep=(sleeps.append if sleeps is not None else None))


def test_every_read_fits_the_description(management_api):
    with client(management_api) as api:
        for read in READS:
            api.read(read.section)
        assert b"".join(api.function_body("notify-team")).startswith(b"ESZIP2.3")
    assert len(management_api.requests) == len(READS) + 1


def test_a_429_waits_for_retry_after_then_reads(management_api):
    management_api.throttled[("GET", "/v1/projects/{ref}/config/auth")] = 2
    sleeps = []
    with client(management_api, sleeps=sleeps) as api:
        assert api.read("auth")["site_url"] == "https://app.bhv360.nl"
    assert sleeps == [0.0, 0.0]


def test_401_names_the_token_and_403_the_missing_scope(management_api):
    with client(management_api, token="sbp_wrong") as api, pytest.raises(ConfigurationError, match="refused the token"):
        api.read("auth")
    management_api.denied_scopes.add("auth:read")
    with client(management_api) as api, pytest.raises(ConfigurationError, match="needs the scope auth:read"):
        api.read("auth")


def test_a_project_ref_that_is_not_one_is_refused():
    with pytest.raises(ConfigurationError, match="20 lowercase letters"):
        ManagementAPI("https://api.supabase.com", TOKEN, "not-a-ref")
