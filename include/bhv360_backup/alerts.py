"""Messages to the operations team: e-mail and Slack ``#ops``, each channel on its own."""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from typing import Any

from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier
from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.sdk import Context

from bhv360_backup.errors import first_line
from bhv360_backup.runtime import load_alert_settings
from bhv360_backup.settings import SLACK_CONN_ID, SMTP_CONN_ID, AlertSettings

log = logging.getLogger(__name__)

# The notifiers render these templates; the message itself is a context value, so text from an
# error message is never parsed as a template.
_MESSAGE = "bhv360_message"


def _email(settings: AlertSettings, files: list[str] | None = None) -> SmtpNotifier:
    return SmtpNotifier(
        to=list(settings.emails),
        from_email=settings.sender,
        subject="{{ bhv360_message.subject }}",
        html_content="{{ bhv360_message.html }}",
        files=files,
        smtp_conn_id=SMTP_CONN_ID,
    )


def _slack() -> SlackWebhookNotifier:
    return SlackWebhookNotifier(slack_webhook_conn_id=SLACK_CONN_ID, text="{{ bhv360_message.text }}")


def notify_ops(context: Context, subject: str, lines: Sequence[str], link: str | None = None) -> list[str]:
    """Send one message to every channel; a channel that fails is logged and the others still go.

    Only the alert settings are read: a broken alert setting stops the e-mail alone, and the Slack
    message says which setting is wrong. Returns the channels that failed.
    """
    channels: list[tuple[str, Any]] = []
    failed: list[str] = []
    try:
        settings = load_alert_settings()
        channels.append((f"e-mail to {', '.join(settings.emails)} via '{SMTP_CONN_ID}'", _email(settings)))
    except Exception as error:  # noqa: BLE001 - a broken alert setting must not hide the failure being reported
        problem = f"the e-mail alert was not sent: {first_line(error)}"
        log.error("%s", problem)
        lines = [*lines, f"Alert settings: {problem}"]
        failed.append("e-mail")
    channels.append((f"Slack #ops via '{SLACK_CONN_ID}'", _slack()))
    text_lines = [f"*{subject}*", *lines] + ([f"Log: {link}"] if link else [])
    html_lines = [f"<p><b>{html.escape(subject)}</b></p>", "<pre>", *map(html.escape, lines), "</pre>"]
    if link:
        html_lines.append(f'<p><a href="{html.escape(link)}">Open the log</a></p>')
    context[_MESSAGE] = {"subject": subject, "text": "\n".join(text_lines), "html": "\n".join(html_lines)}  # type: ignore[literal-required]
    for name, notifier in channels:
        try:
            notifier(context)
            log.info("alert sent by %s", name)
        except Exception as error:  # noqa: BLE001 - one channel's failure must not stop the other
            log.error("could not send the alert by %s: %s", name, first_line(error))
            failed.append(name)
    return failed


def email_report(context: Context, subject: str, html_report: str, files: list[str] | None = None) -> None:
    """E-mail an HTML report to the alert addresses (the report is the message body; ``files`` attached)."""
    context[_MESSAGE] = {"subject": subject, "html": html_report, "text": subject}  # type: ignore[literal-required]
    _email(load_alert_settings(), files)(context)


def task_failure_alert(context: Context) -> None:
    """``on_failure_callback`` of every task: which DAG, task, run and try failed, why, and the log."""
    ti = context["ti"]
    error = context.get("exception")
    reason = first_line(error) if isinstance(error, BaseException) else str(error or "unknown error")
    dag_id = ti.dag_id
    notify_ops(
        context,
        f"[bhv360-backup] FAILED {dag_id}.{ti.task_id}",
        [
            f"DAG: {dag_id}",
            f"Task: {ti.task_id}",
            f"Run: {ti.run_id}",
            f"Try: {ti.try_number}",
            f"Error: {reason}",
            *getattr(error, "details", []),
        ],
        link=getattr(ti, "log_url", None),
    )
