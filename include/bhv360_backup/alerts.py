"""Messages to the operations team: e-mail (HTML with a text part) and Slack ``#ops`` (blocks), each
channel on its own; a "resolved" message when a task that alerted succeeds again."""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from functools import cached_property
from typing import Any

from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier
from airflow.providers.smtp.hooks.smtp import SmtpHook
from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.sdk import Context

from bhv360_backup import joblog
from bhv360_backup.errors import first_line
from bhv360_backup.runtime import job_log_dir, load_alert_settings
from bhv360_backup.settings import SLACK_CONN_ID, SMTP_CONN_ID, AlertSettings

log = logging.getLogger(__name__)

PREFIX = "[bhv360-backup]"
# Slack's limits: a header's text, a section's text and a field's text
_HEADER_MAX, _SECTION_MAX, _FIELD_MAX = 150, 3000, 2000


@dataclass(frozen=True)
class Alert:
    """One message, rendered for each channel: a headline, facts (label and value), the error's first
    line, further detail lines and a link to the log."""

    subject: str
    facts: tuple[tuple[str, str], ...] = ()
    error: str | None = None
    details: tuple[str, ...] = ()
    link: str | None = None

    def text(self) -> str:
        lines = [self.subject, *(f"{label}: {value}" for label, value in self.facts)]
        if self.error:
            lines.append(f"Error: {self.error}")
        lines += self.details
        if self.link:
            lines.append(f"Log: {self.link}")
        return "\n".join(lines)

    def html(self) -> str:
        e = html.escape
        rows = "".join(f"<tr><th align='left' style='padding:2px 12px 2px 0'>{e(label)}</th><td>{e(value)}</td></tr>"
                       for label, value in self.facts)
        parts = [f"<h2 style='font-family:sans-serif'>{e(self.subject)}</h2>",
                 f"<table style='font-family:sans-serif;border-collapse:collapse'>{rows}</table>"]
        if self.error:
            parts.append(f"<p style='font-family:sans-serif'><b>Error:</b> <code>{e(self.error)}</code></p>")
        if self.details:
            parts.append("<pre>" + "\n".join(map(e, self.details)) + "</pre>")
        if self.link:
            parts.append(f"<p style='font-family:sans-serif'><a href=\"{e(self.link)}\">Open the log</a></p>")
        return "\n".join(parts)

    def blocks(self) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": _cut(self.subject, _HEADER_MAX)}},
        ]
        if self.facts:
            blocks.append({"type": "section", "fields": [
                {"type": "mrkdwn", "text": _cut(f"*{_slack(label)}*\n{_slack(value)}", _FIELD_MAX)}
                for label, value in self.facts[:10]
            ]})
        if self.error:
            blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                       "text": _cut(f"*Error*\n```{_slack(self.error)}```", _SECTION_MAX)}})
        if self.details:
            blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                       "text": _cut("```" + _slack("\n".join(self.details)) + "```",
                                                                    _SECTION_MAX)}})
        if self.link:
            blocks.append({"type": "actions", "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Open the log"}, "url": self.link},
            ]})
        return blocks


def _slack(text: str) -> str:
    """Slack's mrkdwn escapes: only these three characters are control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, a cut marked with an ellipsis; a code block stays closed."""
    if len(text) <= limit:
        return text
    end = "…```" if text.endswith("```") else "…"
    return text[: limit - len(end)] + end


class _TextAndHtmlSmtpHook(SmtpHook):
    """The provider's SMTP hook, with a plain-text alternative beside the HTML body."""

    def __init__(self, *, text: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.text = text

    def _build_mime_message(self, *args: Any, **kwargs: Any) -> tuple[MIMEMultipart, list[str]]:
        message, recipients = super()._build_mime_message(*args, **kwargs)
        parts = message.get_payload()
        alternative = MIMEMultipart("alternative")
        alternative.attach(MIMEText(self.text, "plain", "utf-8"))
        alternative.attach(parts[0])  # the provider's HTML part; the attachments follow it
        parts[0] = alternative
        return message, recipients


class _TextAndHtmlEmail(SmtpNotifier):
    def __init__(self, *, text: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.text = text

    @cached_property
    def hook(self) -> SmtpHook:
        return _TextAndHtmlSmtpHook(text=self.text, smtp_conn_id=self.smtp_conn_id, auth_type=self.auth_type)


def _email(settings: AlertSettings, subject: str, html_body: str, text: str,
           files: list[str] | None = None) -> SmtpNotifier:
    return _TextAndHtmlEmail(to=list(settings.emails), from_email=settings.sender, subject=subject,
                             html_content=html_body, text=text, files=files, smtp_conn_id=SMTP_CONN_ID)


def notify_ops(context: Context, alert: Alert) -> list[str]:
    """Send one message to every channel; a channel that fails is logged and the others still go.

    Only the alert settings are read: a broken alert setting stops the e-mail alone, and the Slack
    message says which setting is wrong. The notifiers are called without template rendering, so
    text from an error message is never parsed as a template. Returns the channels that failed.
    """
    channels: list[tuple[str, Any]] = []
    failed: list[str] = []
    try:
        settings = load_alert_settings()
    except Exception as error:  # noqa: BLE001 - a broken alert setting must not hide the failure being reported
        problem = f"the e-mail alert was not sent: {first_line(error)}"
        log.error("%s", problem)
        alert = Alert(alert.subject, (*alert.facts, ("Alert settings", problem)), alert.error, alert.details,
                      alert.link)
        failed.append("e-mail")
    else:
        channels.append((f"e-mail to {', '.join(settings.emails)} via '{SMTP_CONN_ID}'",
                         _email(settings, alert.subject, alert.html(), alert.text())))
    channels.append((f"Slack #ops via '{SLACK_CONN_ID}'", SlackWebhookNotifier(
        slack_webhook_conn_id=SLACK_CONN_ID, text=alert.text(), blocks=alert.blocks())))
    for name, notifier in channels:
        try:
            notifier.notify(context)
            log.info("alert sent by %s", name)
        except Exception as error:  # noqa: BLE001 - one channel's failure must not stop the other
            log.error("could not send the alert by %s: %s", name, first_line(error))
            failed.append(name)
    return failed


def email_report(context: Context, subject: str, html_report: str, text: str, files: list[str] | None = None) -> None:
    """E-mail an HTML report (with ``text`` as its plain-text part) to the alert addresses, ``files`` attached."""
    _email(load_alert_settings(), subject, html_report, text, files).notify(context)


def _job_line(context: Context) -> dict[str, Any] | None:
    """The job log's newest line of this task's run: which backup and where it landed."""
    ti = context["ti"]
    try:
        return joblog.newest(job_log_dir(), dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id)
    except Exception as error:  # noqa: BLE001 - the alert goes without these facts
        log.warning("the alert goes without the job log's facts: %s", first_line(error))
        return None


def _backup_facts(line: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not line:
        return []
    facts = [("Backup", " ".join(filter(None, (line.get("type"), line.get("backup_id")))))]
    failed = line.get("failed_locations") or {}
    where = [f"{name}: complete" for name in line.get("locations") or []]
    where += [f"{name}: FAILED ({first_line(reason)})" for name, reason in failed.items()]
    if where:
        facts.append(("Locations", "; ".join(where)))
    return facts


def task_failure_alert(context: Context) -> None:
    """``on_failure_callback`` of every task: what failed, why, which backup and locations, and the log."""
    ti = context["ti"]
    error = context.get("exception")
    reason = first_line(error) if isinstance(error, BaseException) else str(error or "unknown error")
    alert = Alert(
        f"{PREFIX} FAILED {ti.dag_id}.{ti.task_id}",
        (("DAG", ti.dag_id), ("Task", f"{ti.task_id} (try {ti.try_number})"), ("Run", ti.run_id),
         *_backup_facts(_job_line(context))),
        reason,
        tuple(getattr(error, "details", ())),
        getattr(ti, "log_url", None),
    )
    notify_ops(context, alert)
    try:
        joblog.append(job_log_dir(), {"type": joblog.ALERT, "time": joblog.now(), "dag_id": ti.dag_id,
                                      "run_id": ti.run_id, "task_id": ti.task_id, "error": reason})
    except Exception as log_error:  # noqa: BLE001 - the alert went; only its "resolved" message is lost
        log.error("the alert is not in the job log, so no 'resolved' message will follow: %s", first_line(log_error))


def task_success_resolved(context: Context) -> None:
    """``on_success_callback`` of every task: when this task alerted before, say that it succeeds again."""
    ti = context["ti"]
    try:
        log_dir = job_log_dir()
        alerts = joblog.open_alerts(log_dir, ti.dag_id, ti.task_id)
    except Exception as error:  # noqa: BLE001 - a task that succeeded never fails over its notice
        log.warning("could not check for open alerts: %s", first_line(error))
        return
    if not alerts:
        return
    since = alerts[0]["time"]
    notify_ops(context, Alert(
        f"{PREFIX} RESOLVED {ti.dag_id}.{ti.task_id}",
        (("DAG", ti.dag_id), ("Task", ti.task_id), ("Succeeded in run", ti.run_id),
         ("Failing since", f"{since} ({len(alerts)} alert{'s' if len(alerts) > 1 else ''})"),
         *_backup_facts(_job_line(context))),
        link=getattr(ti, "log_url", None),
    ))
    joblog.append(log_dir, {"type": joblog.ALERT_RESOLVED, "time": joblog.now(), "dag_id": ti.dag_id,
                            "run_id": ti.run_id, "task_id": ti.task_id, "since": since})


def dag_failure_alert(context: Context) -> None:
    """DAG ``on_failure_callback``: alert when a run fails without a task's alert (it timed out)."""
    reason = str(context.get("reason") or "")
    if reason == "task_failure":
        return  # the failed task alerted already
    dag = context["dag"]
    timeout = getattr(dag, "dagrun_timeout", None)
    notify_ops(context, Alert(
        f"{PREFIX} FAILED {dag.dag_id}: the run {reason.replace('_', ' ') or 'failed'}",
        (("DAG", dag.dag_id), ("Run", str(context.get("run_id"))),
         *((("Run timeout", str(timeout)),) if timeout else ())),
        "the run did not finish in time; its unfinished tasks were stopped" if reason == "timed_out" else reason,
    ))


def lines_alert(subject: str, lines: Sequence[str], link: str | None = None) -> Alert:
    """A notice made of plain lines (a restore's plan, the health table)."""
    return Alert(subject, details=tuple(lines), link=link)
