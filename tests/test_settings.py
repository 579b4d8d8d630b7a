"""Settings: defaults of the contract, validation that names every broken variable."""

from __future__ import annotations

import pytest

from bhv360_backup.errors import ConfigurationError
from bhv360_backup.settings import AlertSettings, Settings, log_dir, parse_bool


def getter(values):
    return lambda name, default: values.get(name, default)


def test_the_contract_defaults():
    settings = Settings.load(getter({}))
    assert str(settings.backup_root) == "/var/backups/bhv360" and settings.s3_bucket == "bhv360-backups"
    assert settings.retention_days == 30 and settings.alert_emails == ("ops@bhv360.nl",)


def test_every_broken_variable_is_named_in_one_error():
    with pytest.raises(ConfigurationError) as raised:
        Settings.load(getter({"bhv360_retention_days": "thirty", "bhv360_age_recipients": "age1-typo",
                              "bhv360_health_green_summary": "maybe"}))
    message = str(raised.value)
    for name in ("bhv360_retention_days", "bhv360_age_recipients", "bhv360_health_green_summary"):
        assert name in message


def test_alert_settings_need_only_their_own_variables():
    broken_elsewhere = getter({"bhv360_age_recipients": "age1-typo", "bhv360_alert_emails": "a@x.nl; b@y.nl"})
    assert AlertSettings.load(broken_elsewhere).emails == ("a@x.nl", "b@y.nl")
    assert log_dir(broken_elsewhere).as_posix() == "/var/log/bhv360/backups"
    with pytest.raises(ConfigurationError, match="bhv360_alert_emails: 'ops' is not an e-mail address"):
        AlertSettings.load(getter({"bhv360_alert_emails": "ops"}))


@pytest.mark.parametrize(("raw", "expected"), [(True, True), ("False", False), ("yes", True), ("", False)])
def test_parse_bool(raw, expected):
    assert parse_bool(raw, "x") is expected
