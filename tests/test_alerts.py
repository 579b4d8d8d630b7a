"""Alerts read only the alert settings: a broken unrelated variable fails the task, and the alert
about it still goes out; a broken alert setting is named in the Slack message."""

from __future__ import annotations

from tests.fixtures.airflow import run_dag

DAG_ID = "bhv360_database_backup"


def test_a_typo_in_an_unrelated_variable_is_alerted_and_logged(backup_env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_AGE_RECIPIENTS", "age1-typo")

    run, states = run_dag(DAG_ID)

    assert states["dump"] == "failed"
    (mail,) = backup_env.smtp.bodies()
    (slack,) = backup_env.webhook.texts()
    for message in (mail, slack):
        assert "FAILED bhv360_database_backup.dump" in message
        assert "variable bhv360_age_recipients: recipient 1 is not an age public key" in message
    (line,) = [entry for entry in backup_env.job_log() if entry["type"] == "database"]
    assert line["status"] == "failed" and "bhv360_age_recipients" in line["error"]


def test_a_broken_alert_setting_is_named_in_the_alert_that_still_goes(backup_env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_AGE_RECIPIENTS", "age1-typo")
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_ALERT_EMAILS", "ops at bhv360.nl")

    run, states = run_dag(DAG_ID)

    assert states["dump"] == "failed"
    assert backup_env.smtp.messages == []
    (slack,) = backup_env.webhook.texts()
    assert "bhv360_age_recipients" in slack
    assert "the e-mail alert was not sent: variable bhv360_alert_emails: 'ops at bhv360.nl' is not an e-mail" in slack
    (line,) = [entry for entry in backup_env.job_log() if entry["type"] == "database"]
    assert line["status"] == "failed" and "bhv360_alert_emails" in line["error"]
