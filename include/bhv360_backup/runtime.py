"""Where Airflow meets the package: connections, variables and locations, resolved at task run time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook, Context, Variable
from airflow.sdk.exceptions import AirflowNotFoundException
from pyrage.x25519 import Identity

from bhv360_backup.errors import ConfigurationError
from bhv360_backup.locations import LocalLocation, Location, ObjectLock, S3Location
from bhv360_backup.postgres.client import PgTarget
from bhv360_backup.repository.encryption import parse_identities
from bhv360_backup.repository.layout import backup_id_for_run
from bhv360_backup.s3_listing import with_fast_listings
from bhv360_backup.settings import (
    AGE_IDENTITY_CONN_ID,
    DEFAULTS,
    SUPABASE_CONN_ID,
    AlertSettings,
    Settings,
    log_dir,
)
from bhv360_backup.sources.storage import (
    LocalFolderSource,
    NativeS3Reader,
    S3StorageSource,
    StorageSource,
    SupabaseStorageSource,
)
from bhv360_backup.sources.supabase_management import ManagementAPI

_CONN_PURPOSE = {
    "bhv360_db": "the database to back up",
    "bhv360_restore_db": "the restore target database",
    "bhv360_s3": "the S3 backup bucket",
    "bhv360_supabase": "the Supabase project",
    "bhv360_age_identity": "the age private key that decrypts encrypted backups",
    "bhv360_supabase_management": "the Supabase Management API: host = API URL, password = personal access token, "
                                  "extra project_ref",
}


def _variable(name: str, default: str) -> str:
    return Variable.get(name, default=default)


def load_settings() -> Settings:
    return Settings.load(_variable)


def load_alert_settings() -> AlertSettings:
    return AlertSettings.load(_variable)


def job_log_dir() -> Path:
    return log_dir(_variable)


def bhv360_variables() -> dict[str, str]:
    """The ``bhv360_`` Variables that are set: every name the package knows plus any given as
    ``AIRFLOW_VAR_BHV360_*`` (a task cannot list the metadata database's Variables)."""
    names = set(DEFAULTS) | {
        name[len("AIRFLOW_VAR_") :].lower() for name in os.environ if name.startswith("AIRFLOW_VAR_BHV360_")
    }
    found = {}
    for name in sorted(names):
        value = Variable.get(name, default=None)
        if value is not None:
            found[name] = str(value)
    return found


def airflow_folders() -> list[Path]:
    """The folders whose files Airflow runs or serves: DAGs, plugins, its home and its logs."""
    from airflow.sdk import conf

    home = Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser()
    return [home, *(Path(conf.get(section, key)).expanduser() for section, key in (
        ("core", "dags_folder"), ("core", "plugins_folder"), ("logging", "base_log_folder")))]


def looks_secret(name: str, value: str) -> bool:
    """Airflow's secrets masker rules: a sensitive name, or a value registered as a secret."""
    from airflow.sdk.log import redact

    return redact(value, name) != value


def get_connection(conn_id: str) -> Any:
    """The Airflow connection, or an error that names it and says how to add it."""
    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        purpose = _CONN_PURPOSE.get(conn_id, "")
        raise ConfigurationError(
            f"Airflow connection '{conn_id}'{f' ({purpose})' if purpose else ''} is not configured: "
            f"add it under Admin > Connections or set AIRFLOW_CONN_{conn_id.upper()}"
        ) from None


def has_connection(conn_id: str) -> bool:
    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def pg_target(conn_id: str) -> PgTarget:
    connection = get_connection(conn_id)
    if not connection.host or not connection.schema:
        raise ConfigurationError(f"Airflow connection '{conn_id}' needs a host and a database (schema)")
    extras = {key: str(value) for key, value in (connection.extra_dejson or {}).items()}
    return PgTarget(
        host=connection.host,
        port=int(connection.port or 5432),
        dbname=connection.schema,
        user=connection.login or "postgres",
        password=connection.password,
        extras=extras,
    )


def age_identities() -> tuple[Identity, ...]:
    """The age identities in the password of connection ``bhv360_age_identity`` (one per line, the
    newest key and the rotated-out ones); none when the connection does not exist."""
    try:
        connection = BaseHook.get_connection(AGE_IDENTITY_CONN_ID)
    except AirflowNotFoundException:
        return ()
    return parse_identities(connection.password or "", f"the password of connection '{AGE_IDENTITY_CONN_ID}'")


def s3_location(settings: Settings, aws_conn_id: str) -> S3Location:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    connection = get_connection(aws_conn_id)
    extra = connection.extra_dejson or {}
    put_args = {key: extra[key] for key in ("ServerSideEncryption", "SSEKMSKeyId") if key in extra}
    lock = None
    if extra.get("object_lock_mode"):
        mode = str(extra["object_lock_mode"]).upper()
        if mode not in ("GOVERNANCE", "COMPLIANCE"):
            raise ConfigurationError(f"connection '{aws_conn_id}': object_lock_mode must be GOVERNANCE or COMPLIANCE")
        lock = ObjectLock(mode, int(extra.get("object_lock_days", settings.retention_days)))
    _, client = s3_client(S3Hook(aws_conn_id=aws_conn_id))
    return S3Location(client, settings.s3_bucket, put_args, lock)


def s3_client(hook: Any) -> tuple[Any, Any]:
    """A boto3 S3 client configured as the hook's connection says (endpoint, region, config, TLS trust),
    from a session whose listings are read fast (:func:`~bhv360_backup.s3_listing.with_fast_listings`),
    and that session (one session: a role is assumed once)."""
    session = with_fast_listings(hook.get_session())
    endpoint = hook.conn_config.get_service_endpoint_url(service_name="s3")
    return session, session.client("s3", endpoint_url=endpoint, config=hook.config, verify=hook.verify)


def supabase_project(conn_id: str) -> tuple[str, str]:
    """The project URL and service-role key of a Supabase connection (host, password)."""
    connection = get_connection(conn_id)
    if not connection.host or not connection.password:
        raise ConfigurationError(f"Airflow connection '{conn_id}' needs host = project URL and password = "
                                 "service-role key")
    return (connection.host if "://" in connection.host else f"https://{connection.host}"), connection.password


def management_api(conn_id: str) -> ManagementAPI:
    """The Management API client of a connection: host = the API's base URL, password = a personal access
    token, extra ``{"project_ref": "<20 lowercase letters>"}``."""
    connection = get_connection(conn_id)
    ref = (connection.extra_dejson or {}).get("project_ref", "")
    if not connection.host or not connection.password or not ref:
        raise ConfigurationError(f"Airflow connection '{conn_id}' needs host = the Management API URL (e.g. "
                                 "https://api.supabase.com), password = a personal access token and extra "
                                 '{"project_ref": "<the project ref>"}')
    base = connection.host if "://" in connection.host else f"https://{connection.host}"
    if connection.port:
        base = f"{base.rstrip('/')}:{connection.port}"
    return ManagementAPI(base, connection.password, ref)


def same_project(url: str, other: str) -> bool:
    """Whether two project URLs name the same Supabase project (scheme, case and a trailing slash aside)."""
    def normal(value: str) -> tuple[str, str]:
        parts = urlsplit(value)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{(parts.hostname or '').lower()}:{port}", parts.path.rstrip("/")

    return normal(url) == normal(other)


def storage_source(settings: Settings, spec: str | None = None) -> StorageSource:
    """The storage source a spec names: ``supabase`` (connection ``bhv360_supabase``),
    ``s3:<aws conn id>`` (an S3-compatible endpoint) or ``folder:<path>``."""
    spec = spec or settings.storage_source
    kind, _, argument = spec.partition(":")
    if kind == "supabase":
        url, key = supabase_project(SUPABASE_CONN_ID)
        return SupabaseStorageSource(url, key, settings.storage_buckets)
    if kind == "s3" and argument:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        get_connection(argument)
        hook = S3Hook(aws_conn_id=argument)
        session, client = s3_client(hook)
        native = native_s3_reader(hook, session, client) if settings.storage_s3_reads == "obstore" else None
        return S3StorageSource(client, settings.storage_buckets, native)
    if kind == "folder" and argument:
        return LocalFolderSource(Path(argument))
    raise ConfigurationError(
        f"variable bhv360_storage_source: {spec!r} is not 'supabase', 's3:<aws conn id>' or 'folder:<path>'"
    )


def native_s3_reader(hook: Any, session: Any, client: Any) -> NativeS3Reader:
    """obstore configured as the connection configures boto3's ``client``: endpoint, region, addressing
    (path-style for any endpoint but AWS's own unless the connection says virtual), the CA bundle it trusts
    (its ``verify`` path, else ``AWS_CA_BUNDLE``) or none, and credentials from the client's ``session``."""
    from obstore.auth.boto3 import Boto3CredentialProvider

    endpoint = client.meta.endpoint_url if hook.conn_config.endpoint_url else None
    addressing = (client.meta.config.s3 or {}).get("addressing_style", "auto")
    verify = hook.verify
    bundle = verify if isinstance(verify, str) else os.environ.get("AWS_CA_BUNDLE")
    return NativeS3Reader(endpoint=endpoint, region=client.meta.region_name,
                          path_style=addressing == "path" or (addressing == "auto" and endpoint is not None),
                          credentials=Boto3CredentialProvider(session),
                          root_certificate=Path(bundle).read_text() if bundle else None, verify=verify is not False)


def open_locations(settings: Settings, aws_conn_id: str) -> list[Location]:
    """The two locations of the strategy: the local root, then the S3 bucket."""
    return [LocalLocation(settings.backup_root), s3_location(settings, aws_conn_id)]


def run_backup_id(context: Context) -> str:
    """The backup id of the running DAG run: the same for every try and every task of that run."""
    dag_run = context["dag_run"]
    scheduled = getattr(dag_run.run_type, "value", dag_run.run_type) == "scheduled"
    return backup_id_for_run(dag_run.run_after, dag_run.run_id, scheduled=scheduled)
