"""Restore a database backup with ``pg_restore`` from a verified local file.

Two modes: a plain restore (``--clean --if-exists``, ``--jobs``, optionally ``--no-owner``), and
``supabase_target``, which follows Supabase's migration procedure for a fresh project whose
managed schemas and reserved roles already exist: non-reserved roles, then the schema of the
non-internal schemas, then the data of all schemas except the internal ones (``auth`` and
``storage`` data included) with ``session_replication_role = replica``, skipping the migration
history tables the platform manages.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

from bhv360_backup.errors import BackupError
from bhv360_backup.postgres.client import PgTarget, exit_message, libpq_environment

log = logging.getLogger(__name__)

# Schemas the Supabase CLI's `db dump` leaves out of the schema dump: the platform owns them.
SUPABASE_INTERNAL_SCHEMAS = frozenset({
    "_analytics", "_realtime", "_supavisor", "auth", "cron", "dbdev", "extensions", "graphql",
    "graphql_public", "information_schema", "net", "pgbouncer", "pgmq", "pgsodium", "pgsodium_masks",
    "pgtle", "realtime", "repack", "storage", "supabase_functions", "supabase_migrations", "tiger",
    "tiger_data", "topology", "vault",
})
# Of those, the data of these is restored (users, buckets and object rows are the project's data).
SUPABASE_DATA_SCHEMAS = frozenset({"auth", "storage"})
# Migration history the platform manages; never restored.
SUPABASE_SKIPPED_TABLES = frozenset({
    "auth.schema_migrations", "storage.migrations", "supabase_functions.migrations",
    "supabase_migrations.schema_migrations",
})
# Roles every Supabase project has; roles.sql statements for them are skipped.
SUPABASE_RESERVED_ROLES = frozenset({
    "anon", "authenticated", "authenticator", "dashboard_user", "pgbouncer", "pgsodium_keyholder",
    "pgsodium_keyiduser", "pgsodium_keymaker", "postgres", "service_role", "supabase_admin",
    "supabase_auth_admin", "supabase_functions_admin", "supabase_read_only_user", "supabase_realtime_admin",
    "supabase_replication_admin", "supabase_storage_admin",
})

_TOC_LINE = re.compile(r"^\d+; \d+ \d+ (?P<rest>.+)$")
_TOC_TYPES = sorted((
    "TABLE DATA", "SEQUENCE SET", "SEQUENCE OWNED BY", "FK CONSTRAINT", "DEFAULT ACL", "INDEX ATTACH",
    "MATERIALIZED VIEW DATA", "MATERIALIZED VIEW", "TEXT SEARCH CONFIGURATION", "TEXT SEARCH DICTIONARY",
    "FOREIGN TABLE", "USER MAPPING", "EVENT TRIGGER", "PUBLICATION TABLES IN SCHEMA", "PUBLICATION TABLE",
    "ROW SECURITY", "TABLE ATTACH", "CHECK CONSTRAINT", "LARGE OBJECT", "OPERATOR CLASS", "OPERATOR FAMILY",
    "BLOB", "ACL", "COMMENT", "DEFAULT", "POLICY", "TRIGGER", "RULE", "CONSTRAINT", "INDEX", "SCHEMA",
    "EXTENSION", "TYPE", "DOMAIN", "FUNCTION", "PROCEDURE", "AGGREGATE", "VIEW", "SEQUENCE", "TABLE",
    "PUBLICATION", "SERVER", "COLLATION", "CONVERSION", "CAST", "OPERATOR",
), key=len, reverse=True)
_ROLE_STATEMENT = re.compile(r'^(?:CREATE|ALTER|GRANT .* TO|COMMENT ON) ROLE "?([^"\s;]+)"?|^GRANT .* TO "?([^"\s;]+)"?')


def toc_entry(line: str) -> tuple[str, str, str] | None:
    """``(type, schema, name)`` of a ``pg_restore --list`` line, or None for comments."""
    match = _TOC_LINE.match(line)
    if not match:
        return None
    rest = match.group("rest")
    for kind in _TOC_TYPES:
        if rest.startswith(kind + " "):
            parts = rest[len(kind) + 1 :].split(" ")
            return kind, parts[0], parts[1] if len(parts) > 1 else ""
    return None


def supabase_lists(toc: Iterable[str]) -> tuple[list[str], list[str]]:
    """The ``--use-list`` lines of the schema step and of the data step."""
    schema, data = [], []
    for line in toc:
        entry = toc_entry(line)
        if entry is None:
            continue
        kind, namespace, name = entry
        if kind in ("TABLE DATA", "SEQUENCE SET", "BLOB", "LARGE OBJECT"):
            internal = namespace in SUPABASE_INTERNAL_SCHEMAS and namespace not in SUPABASE_DATA_SCHEMAS
            if not internal and f"{namespace}.{name}" not in SUPABASE_SKIPPED_TABLES:
                data.append(line)
        elif kind == "SCHEMA":
            if name not in SUPABASE_INTERNAL_SCHEMAS and name != "public":
                schema.append(line)
        elif kind != "EXTENSION" and namespace not in SUPABASE_INTERNAL_SCHEMAS:
            schema.append(line)
    return schema, data


def non_reserved_roles_sql(roles_sql: str) -> str:
    """roles.sql without the statements about Supabase's reserved roles."""
    kept = []
    for line in roles_sql.splitlines():
        match = _ROLE_STATEMENT.match(line)
        role = next((group for group in match.groups() if group), None) if match else None
        if role and (role in SUPABASE_RESERVED_ROLES or role.startswith("pg_")):
            continue
        kept.append(line)
    return "\n".join(kept) + "\n"


def _run(argv: list[str], env: dict[str, str], what: str) -> str:
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise BackupError(exit_message(what, result.returncode, result.stderr.strip()[-2000:]))
    return result.stdout


def apply_roles(roles_file: Path, target: PgTarget, psql: str, *, supabase: bool) -> int:
    """Run roles.sql; roles that already exist are reported, not fatal. Returns the error count."""
    script = roles_file.read_text()
    if supabase:
        script = non_reserved_roles_sql(script)
    with libpq_environment(target) as env:
        result = subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=0", "-f", "-"], input=script, env=env,
                                capture_output=True, text=True)
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    for line in errors:
        log.warning("roles.sql: %s", line)
    return len(errors)


def restore_dump(
    dump: Path, target: PgTarget, pg_restore: str, *, jobs: int, no_owner: bool, supabase: bool, work_dir: Path
) -> None:
    """Restore ``dump`` into ``target``; raise with ``pg_restore``'s own message on failure."""
    owner = ["--no-owner", "--no-acl"] if no_owner else []
    with libpq_environment(target) as env:
        if not supabase:
            _run([pg_restore, "--clean", "--if-exists", f"--jobs={jobs}", *owner, f"--dbname={target.dbname}",
                  str(dump)], env, "pg_restore")
            return
        toc = _run([pg_restore, "--list", str(dump)], env, "pg_restore --list").splitlines()
        schema_lines, data_lines = supabase_lists(toc)
        schema_list, data_list = work_dir / "schema.list", work_dir / "data.list"
        schema_list.write_text("\n".join(schema_lines) + "\n")
        data_list.write_text("\n".join(data_lines) + "\n")
        _run([pg_restore, "--schema-only", "--no-owner", "--no-acl", f"--use-list={schema_list}",
              f"--dbname={target.dbname}", str(dump)], env, "pg_restore (schema)")
        data_env = {**env, "PGOPTIONS": "-c session_replication_role=replica"}
        _run([pg_restore, "--data-only", f"--jobs={jobs}", f"--use-list={data_list}", f"--dbname={target.dbname}",
              str(dump)], data_env, "pg_restore (data)")
