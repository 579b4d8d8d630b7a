"""The configuration backup: one deterministic ``config.json`` of the system's settings.

Sections: the storage bucket definitions, the database-level configuration of ``bhv360_db``
(extensions, roles without passwords, ``ALTER ... SET`` settings, row-level security, publications),
rows of the application's settings tables, the ``bhv360_`` Airflow Variables (secret-looking
values masked), configuration files, and with a Management API connection the Supabase project's
own configuration and Edge Functions (see :mod:`bhv360_backup.repository.config` for its secrets). Keys are sorted and lists ordered, so an unchanged
configuration gives the same bytes and the same sha256. Each section records where it came from;
a section whose source cannot be read fails the backup with the section's name.
"""

from __future__ import annotations

import base64
import hashlib
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bhv360_backup.errors import BackupError, ConfigurationError, first_line
from bhv360_backup.postgres.client import PgTarget
from bhv360_backup.repository.config import (
    CONFIG_FORMAT,
    DIGEST_FIELD,
    MASK,
    function_body_artifact,
    secret_digests,
    split_secrets,
)
from bhv360_backup.sources.storage import StorageSource
from bhv360_backup.sources.supabase_management import READS, ManagementAPI

DATABASE_QUERIES = {
    "extensions": """
        SELECT jsonb_build_object('name', e.extname, 'version', e.extversion, 'schema', n.nspname)
        FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace ORDER BY e.extname""",
    "roles": """
        SELECT jsonb_build_object(
            'name', r.rolname, 'superuser', r.rolsuper, 'inherit', r.rolinherit,
            'create_role', r.rolcreaterole, 'create_db', r.rolcreatedb, 'can_login', r.rolcanlogin,
            'replication', r.rolreplication, 'bypass_rls', r.rolbypassrls, 'connection_limit', r.rolconnlimit,
            'valid_until', r.rolvaliduntil,
            'member_of', coalesce((SELECT jsonb_agg(g.rolname ORDER BY g.rolname) FROM pg_auth_members m
                                   JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid), '[]'::jsonb))
        FROM pg_roles r WHERE r.rolname NOT LIKE 'pg\\_%' ORDER BY r.rolname""",
    "settings": """
        SELECT jsonb_build_object('role', coalesce(r.rolname, '*'), 'database', coalesce(d.datname, '*'),
                                  'settings', to_jsonb(s.setconfig))
        FROM pg_db_role_setting s
        LEFT JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase
        WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
        ORDER BY 1::text""",
    "row_level_security": """
        SELECT jsonb_build_object('table', n.nspname || '.' || c.relname, 'enabled', c.relrowsecurity,
                                  'forced', c.relforcerowsecurity)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND (c.relrowsecurity OR c.relforcerowsecurity)
        ORDER BY n.nspname, c.relname""",
    "policies": """
        SELECT jsonb_build_object('table', schemaname || '.' || tablename, 'name', policyname,
                                  'permissive', permissive, 'roles', to_jsonb(roles), 'command', cmd,
                                  'using', qual, 'with_check', with_check)
        FROM pg_policies ORDER BY schemaname, tablename, policyname""",
    "publications": """
        SELECT jsonb_build_object('name', p.pubname, 'all_tables', p.puballtables, 'insert', p.pubinsert,
                                  'update', p.pubupdate, 'delete', p.pubdelete, 'truncate', p.pubtruncate,
                                  'tables', coalesce((SELECT jsonb_agg(t.schemaname || '.' || t.tablename
                                                                       ORDER BY t.schemaname, t.tablename)
                                                      FROM pg_publication_tables t WHERE t.pubname = p.pubname),
                                                     '[]'::jsonb))
        FROM pg_publication p ORDER BY p.pubname""",
}


def _section(name: str, read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return read()
    except (BackupError, psycopg.Error, OSError) as error:
        raise BackupError(f"config section '{name}' could not be read: {first_line(error)}") from None


def database_section(target: PgTarget) -> dict[str, Any]:
    with target.connect() as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        section: dict[str, Any] = {
            "source": f"bhv360_db {target.describe()}",
            "server_version": connection.execute("SHOW server_version").fetchone()[0],
        }
        for key, query in DATABASE_QUERIES.items():
            section[key] = [row[0] for row in connection.execute(query).fetchall()]
    return section


def _table_identifier(name: str) -> sql.Composed:
    schema, _, table = name.partition(".")
    if not table:
        schema, table = "public", schema
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def settings_tables_section(target: PgTarget, tables: Sequence[str]) -> dict[str, Any]:
    rows: dict[str, list] = {}
    with target.connect() as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        for name in tables:
            if connection.execute("SELECT to_regclass(%s)", [name]).fetchone()[0] is None:
                raise ConfigurationError(f"table {name} (variable bhv360_config_tables) does not exist")
            query = sql.SQL("SELECT to_jsonb(t) FROM {} t ORDER BY to_jsonb(t)::text").format(_table_identifier(name))
            rows[name] = [row[0] for row in connection.execute(query).fetchall()]
    return {"source": f"bhv360_db {target.describe()}, variable bhv360_config_tables", "tables": rows}


def storage_section(source: StorageSource) -> dict[str, Any]:
    return {"source": source.describe(), "buckets": [bucket.to_dict() for bucket in source.list_buckets()]}


def variables_section(variables: Mapping[str, str], is_secret: Callable[[str, str], bool]) -> dict[str, Any]:
    shown, masked = {}, []
    for name in sorted(variables):
        if is_secret(name, variables[name]):
            shown[name] = MASK
            masked.append(name)
        else:
            shown[name] = variables[name]
    return {"source": "Airflow Variables named bhv360_*", "variables": shown, "masked": masked}


def files_section(paths: Sequence[str]) -> dict[str, Any]:
    files = []
    for configured in paths:
        root = Path(configured)
        if not root.exists():
            raise ConfigurationError(f"{configured} (variable bhv360_config_paths) does not exist")
        candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in candidates:
            data = path.read_bytes()
            try:
                content, encoding = data.decode("utf-8"), "utf-8"
            except UnicodeDecodeError:
                content, encoding = base64.b64encode(data).decode(), "base64"
            files.append({"path": str(path), "mode": oct(stat.S_IMODE(path.stat().st_mode)),
                          "encoding": encoding, "content": content})
    return {"source": "variable bhv360_config_paths", "files": files}


def config_document(
    *,
    database: PgTarget,
    storage: StorageSource,
    tables: Sequence[str],
    variables: Mapping[str, str],
    is_secret: Callable[[str, str], bool],
    paths: Sequence[str],
) -> dict[str, Any]:
    """Read every section; a section that cannot be read fails the whole document."""
    return {
        "format": CONFIG_FORMAT,
        "storage_buckets": _section("storage_buckets", lambda: storage_section(storage)),
        "database": _section("database", lambda: database_section(database)),
        "settings_tables": _section("settings_tables", lambda: settings_tables_section(database, tables)),
        "airflow_variables": _section("airflow_variables", lambda: variables_section(variables, is_secret)),
        "files": _section("files", lambda: files_section(paths)),
    }


@dataclass
class ProjectConfig:
    """A project's configuration as read: the section for ``config.json`` (no secret values), the secret
    values by section, and the steps left to an operator in a restore."""

    section: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    manual_steps: list[str] = field(default_factory=list)


def _hashed(chunks: Iterable[bytes], digest: Any) -> Iterator[bytes]:
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def project_config(api: ManagementAPI, add_artifact: Callable[[str, Iterable[bytes]], None], *,
                   keep_secrets: bool) -> ProjectConfig:
    """Every configuration read of the project, each function's body stored through ``add_artifact``
    (streamed, its sha256 recorded). Secret values are kept apart (only when ``keep_secrets``: the backup
    is encrypted); values the API only gives as digests, and the project's secrets, become manual steps."""
    result = ProjectConfig()
    project: dict[str, Any] = {}
    for read in READS:
        data = _section(f"project.{read.section}", lambda read=read: api.read(read.section))
        shown, hidden = split_secrets(read.section, data)
        for name, value in sorted(hidden.items()):
            if DIGEST_FIELD.match(name):
                result.manual_steps.append(f"{read.section}.{name}: set it by hand (the API gives only its digest, "
                                           f"sha256 {value})")
            elif not keep_secrets:
                result.manual_steps.append(f"{read.section}.{name}: set it by hand (backups are not encrypted, so "
                                           "its value was not kept)")
        if keep_secrets and hidden:
            result.secrets[read.section] = hidden
        project[read.section] = shown
    project["secrets"] = secret_digests(project["secrets"])
    result.manual_steps += [f"secret {item['name']}: set it by hand (the API gives only its digest, sha256 "
                            f"{item['sha256']})" for item in project["secrets"]]
    functions = []
    for function in sorted(project["functions"], key=lambda item: item["slug"]):
        digest = hashlib.sha256()
        artifact = function_body_artifact(function["slug"])
        _section(f"project.functions.{function['slug']}",
                 lambda slug=function["slug"], artifact=artifact, digest=digest:
                 add_artifact(artifact, _hashed(api.function_body(slug), digest)))
        functions.append({**function, "body": {"artifact": artifact, "sha256": digest.hexdigest()}})
    project["functions"] = functions
    result.section = {"source": api.describe(), **project}
    return result
