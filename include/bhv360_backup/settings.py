"""The operations contract's connection ids and variables, read at run time with their defaults."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pyrage.x25519 import Recipient

from bhv360_backup.errors import ConfigurationError
from bhv360_backup.repository.compression import DEFAULT_DUMP_COMPRESSION, DumpCompression
from bhv360_backup.repository.encryption import parse_recipients

DB_CONN_ID = "bhv360_db"
RESTORE_DB_CONN_ID = "bhv360_restore_db"
S3_CONN_ID = "bhv360_s3"
SUPABASE_CONN_ID = "bhv360_supabase"
SLACK_CONN_ID = "bhv360_slack_ops"
MANAGEMENT_CONN_ID = "bhv360_supabase_management"
SMTP_CONN_ID = "smtp_default"
AGE_IDENTITY_CONN_ID = "bhv360_age_identity"
NEEDS_IDENTITY = (f"the age identity (Airflow connection {AGE_IDENTITY_CONN_ID}; for bhv360-backup, "
                  "BHV360_AGE_IDENTITY_FILE)")

DEFAULTS = {
    "bhv360_backup_root": "/var/backups/bhv360",
    "bhv360_s3_bucket": "bhv360-backups",
    "bhv360_log_dir": "/var/log/bhv360/backups",
    "bhv360_retention_days": "30",
    "bhv360_alert_emails": "ops@bhv360.nl",
    "bhv360_alert_from": "bhv360-backup@bhv360.nl",
    "bhv360_timezone": "Europe/Amsterdam",
    "bhv360_keep_min": "3",
    "bhv360_pg_dump_bin_dir": "",
    "bhv360_storage_source": "supabase",
    "bhv360_storage_buckets": "",
    "bhv360_storage_parallelism": "8",
    "bhv360_storage_s3_reads": "obstore",
    "bhv360_config_tables": "",
    "bhv360_config_paths": "",
    "bhv360_health_green_summary": "false",
    "bhv360_age_recipients": "",
    "bhv360_incremental_interval_minutes": "5",
    "bhv360_incremental_slot": "bhv360_backup",
    "bhv360_incremental_max_retained_mb": "2048",
    "bhv360_dump_compression": "gzip:1",
    "bhv360_restore_folder_root": "",
    "bhv360_config_watch": "auth.disable_signup,auth.uri_allow_list,auth.site_url,auth.external_*_enabled",
}

S3_READERS = ("obstore", "boto3")  # what reads an S3 storage source's objects (listing is boto3's)

VariableGetter = Callable[[str, str], str]


def environment_variable(name: str, default: str) -> str:
    """Read a variable the way Airflow's environment backend does, without any DB access."""
    return os.environ.get(f"AIRFLOW_VAR_{name.upper()}", default)


def schedule_timezone() -> str:
    """The zone the DAG schedules follow, read at parse time from the environment only."""
    name = environment_variable("bhv360_timezone", DEFAULTS["bhv360_timezone"])
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ConfigurationError(f"variable bhv360_timezone: unknown time zone {name!r}") from error
    return name


def task_queue() -> str:
    """The executor queue of every task, read at parse time from ``AIRFLOW_VAR_BHV360_QUEUE``: with the
    Celery or Kubernetes executor, pin the tasks to the workers that can write the local location."""
    return environment_variable("bhv360_queue", "default").strip() or "default"


def incremental_interval() -> int:
    """Minutes between incremental captures (0: switched off), read at parse time from the environment
    (``AIRFLOW_VAR_BHV360_INCREMENTAL_INTERVAL_MINUTES``) since it shapes a schedule."""
    raw = environment_variable("bhv360_incremental_interval_minutes", DEFAULTS["bhv360_incremental_interval_minutes"])
    try:
        minutes = int(raw)
    except ValueError:
        raise ConfigurationError(f"variable bhv360_incremental_interval_minutes must be a whole number, got {raw!r}") from None
    if not 0 <= minutes <= 60:
        raise ConfigurationError(f"variable bhv360_incremental_interval_minutes must be 0 (off) to 60, got {minutes}")
    return minutes


def incremental_cron() -> str | None:
    minutes = incremental_interval()
    return f"*/{minutes} * * * *" if minutes else None


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"variable {name} must be a whole number, got {raw!r}") from None
    if value < 1:
        raise ConfigurationError(f"variable {name} must be at least 1, got {value}")
    return value


TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off", "")


def parse_bool(raw: object, what: str) -> bool:
    """A boolean from a bool or its text (a rendered template, a variable); anything else is an error
    naming ``what``, never silently true."""
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ConfigurationError(f"{what} must be true or false, got {raw!r}")


def _slot_name(raw: str) -> str:
    if not re.fullmatch(r"[a-z0-9_]{1,63}", raw):
        raise ConfigurationError(f"variable bhv360_incremental_slot: {raw!r} is not a replication slot name "
                                 "(lower-case letters, digits and underscores)")
    return raw


def _names(raw: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in raw.split(",") if name.strip())


_EMAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")


def _setting(get: VariableGetter, name: str) -> str:
    return str(get(name, DEFAULTS[name])).strip()


@dataclass(frozen=True)
class AlertSettings:
    """The only settings an alert needs, loaded on their own so a broken unrelated variable never
    silences the alert about it."""

    emails: tuple[str, ...]
    sender: str

    @classmethod
    def load(cls, get: VariableGetter = environment_variable) -> AlertSettings:
        emails = _names(_setting(get, "bhv360_alert_emails").replace(";", ","))
        if not emails:
            raise ConfigurationError("variable bhv360_alert_emails is empty: name at least one address")
        wrong = [address for address in emails if not _EMAIL.match(address)]
        if wrong:
            raise ConfigurationError(f"variable bhv360_alert_emails: {wrong[0]!r} is not an e-mail address")
        sender = _setting(get, "bhv360_alert_from")
        if not _EMAIL.match(sender):
            raise ConfigurationError(f"variable bhv360_alert_from: {sender!r} is not an e-mail address")
        return cls(emails, sender)


def log_dir(get: VariableGetter = environment_variable) -> Path:
    """The job log's folder, read on its own so a failure to load the other settings is still logged."""
    return Path(_setting(get, "bhv360_log_dir")).expanduser()


@dataclass(frozen=True)
class Settings:
    """Run-time settings; build with :meth:`load` from Airflow Variables or the environment."""

    backup_root: Path
    s3_bucket: str
    log_dir: Path
    retention_days: int
    alert_emails: tuple[str, ...]
    alert_from: str
    keep_min: int
    pg_bin_dir: str
    storage_source: str
    storage_buckets: tuple[str, ...]
    storage_parallelism: int
    config_tables: tuple[str, ...]
    config_paths: tuple[str, ...]
    health_green_summary: bool
    age_recipients: tuple[Recipient, ...] = ()
    incremental_interval_minutes: int = 5
    incremental_slot: str = "bhv360_backup"
    incremental_max_retained_mb: int = 2048
    dump_compression: DumpCompression = DEFAULT_DUMP_COMPRESSION
    restore_folder_root: Path | None = None
    config_watch: tuple[str, ...] = ()
    storage_s3_reads: str = "obstore"

    @property
    def incremental(self) -> bool:
        return self.incremental_interval_minutes > 0

    @classmethod
    def load(cls, get: VariableGetter = environment_variable) -> Settings:
        """Read every variable through ``get(name, default)``; every broken one is named in one error."""
        problems: list[str] = []

        def checked(parse: Callable[[], Any], fallback: Any) -> Any:
            try:
                return parse()
            except ConfigurationError as error:
                problems.append(str(error))
                return fallback

        def value(name: str) -> str:
            return _setting(get, name)

        def bucket() -> str:
            if not value("bhv360_s3_bucket"):
                raise ConfigurationError("variable bhv360_s3_bucket is empty")
            return value("bhv360_s3_bucket")

        def s3_reads() -> str:
            if value("bhv360_storage_s3_reads") not in S3_READERS:
                raise ConfigurationError(f"variable bhv360_storage_s3_reads: {value('bhv360_storage_s3_reads')!r} "
                                         f"is not one of {', '.join(S3_READERS)}")
            return value("bhv360_storage_s3_reads")

        def positive(name: str) -> int:
            return checked(lambda: _positive_int(name, value(name)), 1)

        alerts = checked(lambda: AlertSettings.load(get), AlertSettings((), ""))
        settings = cls(
            backup_root=Path(value("bhv360_backup_root")).expanduser(),
            s3_bucket=checked(bucket, ""),
            log_dir=log_dir(get),
            retention_days=positive("bhv360_retention_days"),
            alert_emails=alerts.emails,
            alert_from=alerts.sender,
            keep_min=positive("bhv360_keep_min"),
            pg_bin_dir=value("bhv360_pg_dump_bin_dir"),
            storage_source=value("bhv360_storage_source"),
            storage_buckets=_names(value("bhv360_storage_buckets")),
            storage_parallelism=positive("bhv360_storage_parallelism"),
            config_tables=_names(value("bhv360_config_tables")),
            config_paths=_names(value("bhv360_config_paths")),
            health_green_summary=checked(lambda: parse_bool(value("bhv360_health_green_summary"),
                                                            "variable bhv360_health_green_summary"), False),
            age_recipients=checked(lambda: parse_recipients(value("bhv360_age_recipients"),
                                                            "variable bhv360_age_recipients"), ()),
            incremental_interval_minutes=checked(incremental_interval, 5),
            incremental_slot=checked(lambda: _slot_name(value("bhv360_incremental_slot")), "bhv360_backup"),
            incremental_max_retained_mb=positive("bhv360_incremental_max_retained_mb"),
            dump_compression=checked(lambda: DumpCompression.parse(value("bhv360_dump_compression"),
                                                                   "variable bhv360_dump_compression"),
                                     DEFAULT_DUMP_COMPRESSION),
            restore_folder_root=Path(value("bhv360_restore_folder_root")) if value("bhv360_restore_folder_root") else None,
            config_watch=_names(value("bhv360_config_watch")),
            storage_s3_reads=checked(s3_reads, "obstore"),
        )
        if problems:
            raise ConfigurationError("; ".join(problems))
        return settings
