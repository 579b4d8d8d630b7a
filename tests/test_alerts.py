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


def _fields(blocks: list[dict]) -> dict[str, str]:
    (section,) = [block for block in blocks if "fields" in block]
    return dict(field["text"].removeprefix("*").split("*\n", 1) for field in section["fields"])


def test_a_failed_backup_alerts_with_where_it_landed_and_a_log_button_then_resolves(backup_env, monkeypatch):
    good_s3 = backup_env.s3.connection_json()
    monkeypatch.setenv("AIRFLOW_CONN_BHV360_S3", backup_env.s3.unreachable_connection_json())

    run, states = run_dag(DAG_ID)

    assert states["dump"] == "failed"
    (post,) = backup_env.webhook.posts
    blocks = post["body"]["blocks"]
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text",
                                                    "text": "[bhv360-backup] FAILED bhv360_database_backup.dump"}}
    fields = _fields(blocks)
    assert fields["Backup"].startswith("database 20")
    assert fields["Locations"].startswith("local: complete; s3: FAILED (unreachable")
    (error,) = [b["text"]["text"] for b in blocks if "text" in b and b["text"]["text"].startswith("*Error*")]
    assert "is complete only in" in error
    (actions,) = [block for block in blocks if block["type"] == "actions"]
    (button,) = actions["elements"]
    assert button["url"].endswith(f"/dags/{DAG_ID}/runs/{run.run_id.replace(':', '%3A').replace('+', '%2B')}"
                                  "/tasks/dump?try_number=1")
    (mail,) = backup_env.smtp.messages
    text = mail.get_body(preferencelist=("plain",)).get_content()
    html = mail.get_body(preferencelist=("html",)).get_content()
    assert "Locations: local: complete; s3: FAILED (unreachable" in text and f"Log: {button['url']}" in text
    assert "<table" in html and "s3: FAILED" in html

    backup_env.webhook.posts.clear()
    backup_env.smtp.messages.clear()
    monkeypatch.setenv("AIRFLOW_CONN_BHV360_S3", good_s3)
    run, states = run_dag(DAG_ID)

    assert set(states.values()) == {"success"}
    (post,) = backup_env.webhook.posts
    assert post["body"]["blocks"][0]["text"]["text"] == "[bhv360-backup] RESOLVED bhv360_database_backup.dump"
    assert "1 alert" in _fields(post["body"]["blocks"])["Failing since"]
    (mail,) = backup_env.smtp.messages
    assert mail["Subject"] == "[bhv360-backup] RESOLVED bhv360_database_backup.dump"

    run, states = run_dag(DAG_ID)
    assert set(states.values()) == {"success"}
    assert len(backup_env.webhook.posts) == 1  # resolved once


def test_a_run_that_times_out_alerts_and_a_task_failure_is_not_alerted_twice(backup_env):
    from bhv360_backup.alerts import dag_failure_alert
    from tests.fixtures.airflow import dag_bag

    dag = dag_bag().dags[DAG_ID]
    dag_failure_alert({"dag": dag, "run_id": "scheduled__2026-11-26T01:00:00+00:00", "reason": "timed_out"})
    dag_failure_alert({"dag": dag, "run_id": "scheduled__2026-11-27T01:00:00+00:00", "reason": "task_failure"})

    (post,) = backup_env.webhook.posts
    blocks = post["body"]["blocks"]
    assert blocks[0]["text"]["text"] == "[bhv360-backup] FAILED bhv360_database_backup: the run timed out"
    assert _fields(blocks)["Run timeout"] == str(dag.dagrun_timeout)
    (mail,) = backup_env.smtp.messages
    assert "did not finish in time" in mail.get_body(preferencelist=("plain",)).get_content()


def test_alert_text_is_escaped_for_each_channel_and_cut_to_slack_limits():
    from bhv360_backup.alerts import Alert

    alert = Alert("[bhv360-backup] FAILED x" + "y" * 200, (("Backup", "database <1> & 2"),),
                  "relation \"a<b\" does not exist", ("z" * 4000,), "http://airflow/dags/x")

    blocks = alert.blocks()
    assert len(blocks[0]["text"]["text"]) == 150
    assert _fields(blocks) == {"Backup": "database &lt;1&gt; &amp; 2"}
    assert "a&lt;b" in blocks[2]["text"]["text"]
    assert len(blocks[3]["text"]["text"]) <= 3000 and blocks[3]["text"]["text"].endswith("```")
    assert "database &lt;1&gt; &amp; 2" in alert.html() and "<1>" not in alert.html()
    assert "Backup: database <1> & 2" in alert.text() and alert.text().endswith("Log: http://airflow/dags/x")
