"""Restore a database backup with ``pg_restore`` from a verified local file, then its access model.

Two modes: a plain restore (``--clean --if-exists``, ``--jobs``, optionally ``--no-owner``), and
``supabase_target``, which follows Supabase's migration procedure for a fresh project whose
managed schemas and reserved roles already exist: non-reserved roles, then the schema of the
non-internal schemas without indexes and keys, the data of all schemas except the internal ones
(``auth`` and ``storage`` data included) with ``session_replication_role = replica``, then the
indexes, keys, triggers and policies; the platform's migration history tables are never restored.

Grants are restored in both modes (never ``--no-acl``). Afterwards the target's access model is made
equal to the one recorded with the backup (grants a fresh project's default privileges widened are
revoked; policies, RLS flags, function security, default privileges, publications and the project's
triggers on ``auth``/``storage`` tables set as recorded) and then compared with it, object by object,
together with the row-visibility probes and the sign-in data: any difference fails the restore.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bhv360_backup.errors import BackupError, first_line
from bhv360_backup.postgres import access
from bhv360_backup.postgres.client import PgTarget, exit_message, libpq_environment
from bhv360_backup.postgres.supabase import (
    SUPABASE_DATA_SCHEMAS,
    SUPABASE_INTERNAL_SCHEMAS,
    SUPABASE_PLATFORM_ROLES,
    SUPABASE_RESERVED_ROLES,
    project_data,
)
from bhv360_backup.repository.config import fingerprint
from bhv360_backup.repository.manifest import iso, utc_now

log = logging.getLogger(__name__)

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
_DATA_KINDS = ("TABLE DATA", "SEQUENCE SET", "BLOB", "LARGE OBJECT")
DASHBOARD_EXTENSIONS = "the Supabase dashboard (Database > Extensions)"
RECONCILE_ROUNDS = 3


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


def supabase_lists(toc: Iterable[str], existing_publications: Collection[str] = ()) -> tuple[list[str], list[str]]:
    """The ``--use-list`` lines of the schema steps and of the data step. Extensions are the platform's
    (created beforehand, see :func:`missing_extensions`): their entries and those depending on them
    (their comments) are left out, as are publications the target already has, the platform's event
    triggers and the platform roles' default privileges."""
    schema, data = [], []
    for line in toc:
        entry = toc_entry(line)
        if entry is None:
            continue
        kind, namespace, name = entry
        if kind in _DATA_KINDS:
            if project_data(f"{namespace}.{name}"):
                data.append(line)
        elif kind == "SCHEMA":
            if name not in SUPABASE_INTERNAL_SCHEMAS and name != "public":
                schema.append(line)
        elif kind == "EXTENSION" or (kind == "COMMENT" and namespace == "-" and name in ("EXTENSION", "EVENT")):
            continue
        elif kind == "EVENT TRIGGER":
            continue  # the platform's: every project has its own, and postgres may not create one
        elif kind == "PUBLICATION" and name in existing_publications:
            continue
        elif kind == "DEFAULT ACL" and line.rsplit(" ", 1)[-1] in SUPABASE_PLATFORM_ROLES:
            continue  # the platform's default privileges: every project has them, and postgres may not alter them
        elif namespace not in SUPABASE_INTERNAL_SCHEMAS:
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


def apply_roles(roles_file: Path, target: PgTarget, psql: str) -> int:
    """Run roles.sql without the reserved roles (never created or altered); roles that already exist
    are reported, not fatal. Returns the error count."""
    script = non_reserved_roles_sql(roles_file.read_text())
    with libpq_environment(target) as env:
        result = subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=0", "-f", "-"], input=script, env=env,
                                capture_output=True, text=True)
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    for line in errors:
        log.warning("roles.sql: %s", line)
    return len(errors)


# --- before anything is written ------------------------------------------------------------------------------

@dataclass(frozen=True)
class TargetState:
    """What a restore needs to know about its target before writing: who connects, which roles,
    extensions and publications exist, and whether it is a Supabase project."""

    user: str
    superuser: bool
    roles: frozenset[str]
    extensions: frozenset[str]
    available_extensions: frozenset[str]
    publications: frozenset[str]
    schemas: frozenset[str]
    member_of: frozenset[str] = frozenset()  # roles whose objects the user may own and give away
    creatable_schemas: frozenset[str] = frozenset()  # schemas the user may create objects in
    may_set_replica_role: bool = True  # SET session_replication_role = replica, by statement
    rights: Mapping[str, str] = field(default_factory=dict)  # superuser or bypassrls: see every row

    @classmethod
    def read(cls, target: PgTarget) -> TargetState:
        with target.connect() as connection:
            def names(query: str) -> frozenset[str]:
                return frozenset(row[0] for row in connection.execute(query).fetchall())

            user, superuser = connection.execute(
                "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
            return cls(user, superuser, names("SELECT rolname FROM pg_roles"), names("SELECT extname FROM pg_extension"),
                       names("SELECT name FROM pg_available_extensions"), names("SELECT pubname FROM pg_publication"),
                       names("SELECT nspname FROM pg_namespace"),
                       names("SELECT rolname FROM pg_roles WHERE pg_has_role(current_user, oid, 'MEMBER')"),
                       names("SELECT nspname FROM pg_namespace WHERE has_schema_privilege(oid, 'CREATE')"),
                       _may_set_replica_role(connection),
                       dict(connection.execute(
                           "SELECT rolname, CASE WHEN rolsuper THEN 'superuser' ELSE 'bypassrls' END FROM pg_roles "
                           "WHERE rolsuper OR rolbypassrls").fetchall()))


def _may_set_replica_role(connection: psycopg.Connection) -> bool:
    """Whether the session may ``SET session_replication_role``: tried in a transaction rolled back."""
    try:
        with connection.transaction(force_rollback=True):
            connection.execute("SET LOCAL session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def restored_owners(summary: Mapping[str, Any], *, supabase: bool) -> set[str]:
    """The roles owning what the restore gives back its owner: into a Supabase project, not the owners of the
    platform's schemas' objects (a backup before 0.3.2 records no schemas: its reserved roles are left out)."""
    if not supabase:
        return set(summary["owners"])
    if "owned_in" not in summary:
        return set(summary["owners"]) - SUPABASE_RESERVED_ROLES
    return {owner for owner, schemas in summary["owned_in"].items()
            if any(schema not in SUPABASE_INTERNAL_SCHEMAS for schema in schemas)}


def _restored_schemas(summary: Mapping[str, Any], *, supabase: bool) -> set[str]:
    """The schemas the backup's objects live in that the restore writes objects into."""
    schemas = {schema for found in summary.get("owned_in", {}).values() for schema in found if schema}
    return {schema for schema in schemas if not supabase or schema not in SUPABASE_INTERNAL_SCHEMAS}


def owner_problems(summary: Mapping[str, Any], state: TargetState, *, supabase: bool, restore_roles: bool,
                   owner_map: Mapping[str, str]) -> list[str]:
    """Why the restore could not give every object its recorded owner (or the one ``owner_map`` names):
    a role the target lacks, one the restoring user may not give objects to, or a mapping onto a role
    that sees every row (a view or ``SECURITY DEFINER`` function owned by it would too)."""
    problems = []
    owners = {owner: owner_map.get(owner, owner) for owner in sorted(restored_owners(summary, supabase=supabase))
              if not owner.startswith("pg_")}  # pg_database_owner owns public, on both sides
    missing = [owner for owner, role in owners.items() if role not in state.roles
               and not (restore_roles and role == owner and role not in SUPABASE_RESERVED_ROLES)]
    if missing:
        problems.append(f"the owner role(s) {', '.join(missing)} of the backup's objects are missing in the target: set "
                        "restore_roles to create them from the backup's roles.sql, create them first, or map each "
                        "to a role of the target with owner_map (e.g. {\"" + missing[0] + "\": \"app_owner\"})")
    if not state.superuser:
        foreign = [role for role in sorted(set(owners.values()) - {state.user}) if role not in state.member_of]
        if foreign:
            problems.append(f"{state.user} may not give objects to role(s) {', '.join(foreign)}: grant them to it "
                            f"first (GRANT {foreign[0]} TO {state.user}; on a hosted project postgres may do that for "
                            "the project's own roles), or restore as a superuser")
    recorded = summary.get("owner_rights", {})
    wider = [f"{owner} -> {role} ({state.rights[role]})" for owner, role in owner_map.items()
             if access.RIGHTS_RANK[state.rights.get(role, "")] > access.RIGHTS_RANK[recorded.get(owner, "")]]
    if wider:
        problems.append(f"owner_map gives objects to a role with more rights than their recorded owner ({', '.join(wider)}): "
                        "a view or SECURITY DEFINER function it owns would show rows its recorded owner could not; map "
                        "to a role with no more than the recorded owner's rights")
    return problems


def missing_extensions(recorded: Sequence[Mapping[str, str]], state: TargetState) -> list[Mapping[str, str]]:
    return [extension for extension in recorded if extension["name"] not in state.extensions]


def preflight(summary: Mapping[str, Any] | None, state: TargetState, *, supabase: bool, restore_roles: bool,
              owner_map: Mapping[str, str] | None = None, replica_role: bool = False) -> list[str]:
    """Every reason the restore would fail part way, found before anything is written. ``summary`` is
    the manifest's ``access`` (roles and extensions; None for a backup made before 0.3)."""
    problems = []
    if supabase and not SUPABASE_DATA_SCHEMAS <= state.schemas:
        problems.append("supabase_target is set but the target has no auth and storage schemas: it is not a "
                        "Supabase project (restore without supabase_target)")
    if replica_role and not state.may_set_replica_role:
        problems.append(f"{state.user} may not SET session_replication_role, which the data step and the replay use "
                        "so the target's triggers do not fire a second time: on a hosted Supabase project postgres may "
                        f"(supautils); elsewhere GRANT SET ON PARAMETER session_replication_role TO {state.user} "
                        "(PostgreSQL 15+), or restore as a superuser")
    if summary is None:
        return problems
    uncreatable = sorted(schema for schema in _restored_schemas(summary, supabase=supabase)
                         if schema in state.schemas and schema not in state.creatable_schemas)
    if uncreatable and not state.superuser:
        problems.append(f"{state.user} may not create objects in schema(s) {', '.join(uncreatable)}: GRANT CREATE ON "
                        f"SCHEMA {uncreatable[0]} TO {state.user}, or restore as a superuser")
    needed = set(summary["roles"])
    creatable = {role for role in needed if role not in SUPABASE_RESERVED_ROLES} if restore_roles else set()
    missing = sorted(needed - state.roles - creatable)
    if missing:
        reserved = [role for role in missing if role in SUPABASE_RESERVED_ROLES]
        others = [role for role in missing if role not in SUPABASE_RESERVED_ROLES]
        if reserved:
            problems.append(f"the target lacks Supabase's role(s) {', '.join(reserved)}, which the backup's grants "
                            "and policies name; restore into a Supabase project, or create them there first "
                            "(a restore never creates or alters Supabase's reserved roles)")
        if others:
            problems.append(f"the target lacks the role(s) {', '.join(others)} that the backup's objects name: set "
                            "restore_roles to create them from the backup's roles.sql, or create them first")
    for extension in missing_extensions(summary["extensions"], state):
        if extension["name"] not in state.available_extensions:
            where = DASHBOARD_EXTENSIONS if supabase else "the server (install its package)"
            problems.append(f"extension {extension['name']} (in schema {extension['schema']}) is not available on "
                            f"the target: enable it in {where}")
    return problems + owner_problems(summary, state, supabase=supabase, restore_roles=restore_roles,
                                     owner_map=owner_map or {})


def create_extensions(target: PgTarget, recorded: Sequence[Mapping[str, str]], state: TargetState) -> list[str]:
    """Create the extensions the backup used that the target lacks, in their recorded schemas; the
    first write of a Supabase-mode restore, so a refusal leaves the target untouched."""
    created = []
    with target.connect(autocommit=True) as connection:
        for extension in missing_extensions(recorded, state):
            try:
                connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(extension["schema"])))
                connection.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {}").format(
                    sql.Identifier(extension["name"]), sql.Identifier(extension["schema"])))
            except psycopg.Error as error:
                raise BackupError(f"extension {extension['name']} is missing in the target and {state.user} may not "
                                  f"create it ({first_line(error)}): enable it in {DASHBOARD_EXTENSIONS}, then restore "
                                  "again; nothing else was written") from None
            created.append(extension["name"])
    return created


# --- a Supabase project as the target: free of the backup's tables, and its Vault ------------------------------

def project_target_problems(details: Mapping[str, Any], target: PgTarget) -> list[str]:
    """What a project must not have for a restore into it: tables of the backup's own schemas already there
    (a restore would not replace them: restore into a new project), or no Vault for the secrets it holds."""
    problems = []
    tables = sorted(table for table in details.get("table_rows", {}) if project_data(table)
                    and table.split(".", 1)[0] not in SUPABASE_DATA_SCHEMAS)
    with target.connect() as connection:
        present = [table for table, found in connection.execute(
            "SELECT t, to_regclass(quote_ident(split_part(t, '.', 1)) || '.' || quote_ident(substr(t, "
            "strpos(t, '.') + 1))) IS NOT NULL FROM unnest(%s::text[]) t", [tables]).fetchall() if found]
        vault = connection.execute("SELECT to_regproc('vault.create_secret') IS NOT NULL").fetchone()[0]
    if present:
        problems.append(f"the target project already has table(s) {', '.join(present[:10])} that the backup restores: "
                        "restore into a new project (a restore into a project does not replace its tables)")
    secrets = (details.get("vault") or {})
    if secrets.get("kept") and not vault:
        problems.append(f"the backup holds {len(secrets['secrets'])} Vault secret(s) and the target has no Vault: "
                        "enable the vault extension (Database > Extensions)")
    return problems


def restore_vault_secrets(target: PgTarget, secrets: Sequence[Mapping[str, Any]],
                          recorded: Mapping[str, str]) -> tuple[dict[str, list[str]], list[str]]:
    """Re-create Vault's secrets in the target with ``vault.create_secret`` (encrypted under the target's own
    root key; the source's encrypted rows are never copied), those it lacks by name, then verify each by name
    and fingerprint. Returns what was done and every difference (secret values are never in either)."""
    done: dict[str, list[str]] = {"created": [], "present": []}
    with target.connect(autocommit=True) as connection:
        for secret in secrets:
            exists = connection.execute("SELECT 1 FROM vault.decrypted_secrets WHERE name = %s",
                                        [secret["name"]]).fetchone()
            if exists:
                done["present"].append(secret["name"])
                continue
            connection.execute("SELECT vault.create_secret(%s, %s, %s)",
                               [secret["secret"], secret["name"], secret["description"] or ""])
            done["created"].append(secret["name"])
        found = {name: fingerprint(value) for name, value in connection.execute(
            "SELECT name, decrypted_secret FROM vault.decrypted_secrets WHERE name = ANY(%s)", [list(recorded)])}
    differences = [f"vault secret {name}: {'missing' if name not in found else 'its value differs from the backup'}"
                   for name, digest in sorted(recorded.items()) if found.get(name) != digest]
    return done, differences


# --- the target's own word on its state -------------------------------------------------------------------

RESTORE_STEPS = ("extensions", "roles", "schema and data", "access model", "vault secrets", "point-in-time replay")


def _mark(target: PgTarget, text: str) -> bool:
    try:
        with target.connect(autocommit=True) as connection:
            connection.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(target.dbname),
                                                                          sql.Literal(text)))
        return True
    except psycopg.Error as error:
        log.warning("could not mark %s (%s): its comment does not say whether the restore finished",
                    target.describe(), first_line(error))
        return False


@contextmanager
def marked_while_restoring(target: PgTarget, backup_id: str, report: dict[str, Any]) -> Iterator[None]:
    """The target database's comment says what it holds while and after a restore writes it: in progress,
    FAILED (what was written, what not), or restored and checked, so nobody switches over to a
    half-written database. ``report["written"]`` collects the steps done."""
    report["written"] = []
    report["marked"] = _mark(target, f"bhv360-backup: restoring database backup {backup_id} since {iso(utc_now())}: "
                                     "INCOMPLETE until the restore ends green; do not switch over to it")
    try:
        yield
    except BaseException as error:
        report["not_written"] = [step for step in RESTORE_STEPS if step not in report["written"]]
        _mark(target, f"bhv360-backup: the restore of database backup {backup_id} FAILED at {iso(utc_now())} "
                      f"({first_line(error)[:300]}); written: {', '.join(report['written']) or 'nothing'}. "
                      "INCOMPLETE: do not switch over to it")
        if isinstance(error, BackupError) and not hasattr(error, "report"):
            raise BackupError(f"{error} (written: {', '.join(report['written']) or 'nothing'}; not written: "
                              f"{', '.join(report['not_written'])}; the target database's comment marks it "
                              "INCOMPLETE)") from None
        raise
    _mark(target, f"bhv360-backup: restored from database backup {backup_id}, checked equal to it at {iso(utc_now())}")


# --- pg_restore --------------------------------------------------------------------------------------------------

def event_triggers(toc: Iterable[str]) -> list[str]:
    """The event triggers a dump holds (they belong to no schema)."""
    return [entry[2] for entry in map(toc_entry, toc) if entry is not None and entry[0] == "EVENT TRIGGER"]


def _without_event_triggers(toc: Iterable[str]) -> list[str]:
    kept = []
    for line in toc:
        entry = toc_entry(line)
        if entry is None or entry[0] == "EVENT TRIGGER" or (entry[0] == "COMMENT" and entry[2] == "EVENT"):
            continue
        kept.append(line)
    return kept


def _restore_in_replica_mode(dump: Path, lists: Sequence[Path], env: dict[str, str], pg_restore: str, psql: str) -> None:
    """Each list's entries as pg_restore's SQL piped into a psql session that first sets
    ``session_replication_role = replica`` by statement: a non-superuser ``postgres`` may do that on a hosted
    project (supautils), never as a connection option. One pipeline per list, side by side."""
    pipelines = []
    for listed in lists:
        producer = subprocess.Popen([pg_restore, "--section=data", f"--use-list={listed}", "--file=-", str(dump)],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        consumer = subprocess.Popen([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                                     "-c", "SET session_replication_role = replica", "-f", "-"],
                                    env=env, stdin=producer.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        producer.stdout.close()
        pipelines.append((producer, consumer))
    problems = []
    for producer, consumer in pipelines:
        consumer_error = consumer.communicate()[1].decode(errors="replace").strip()
        producer_error = producer.communicate()[1].decode(errors="replace").strip()
        if consumer.returncode != 0:
            problems.append(exit_message("psql (data, replica mode)", consumer.returncode, consumer_error[-2000:]))
        elif producer.returncode != 0:
            problems.append(exit_message("pg_restore (data)", producer.returncode, producer_error[-2000:]))
    if problems:
        raise BackupError("; ".join(problems))


def restore_dump(
    dump: Path, target: PgTarget, pg_restore: str, *, jobs: int, no_owner: bool, supabase: bool, work_dir: Path,
    state: TargetState | None = None, psql: str = "psql",
) -> list[str]:
    """Restore ``dump`` into ``target`` with its grants; raise with the client's own message on failure.
    Returns the event triggers left out: a Supabase project's are the platform's, and a non-superuser may
    create none (the report names them)."""
    owner = ["--no-owner"] if no_owner else []
    superuser = state.superuser if state else True
    with libpq_environment(target) as env:
        toc = _run([pg_restore, "--list", str(dump)], env, "pg_restore --list").splitlines()
        skipped = event_triggers(toc) if (supabase or not superuser) else []
        database = f"--dbname={target.dbname}"
        if not supabase:
            listed = []
            if skipped:
                full_list = work_dir / "restore.list"
                full_list.write_text("\n".join(_without_event_triggers(toc)) + "\n")
                listed = [f"--use-list={full_list}"]
            _run([pg_restore, "--clean", "--if-exists", f"--jobs={jobs}", *owner, *listed, database, str(dump)], env,
                 "pg_restore")
            return skipped
        schema_lines, data_lines = supabase_lists(toc, state.publications if state else ())
        schema_list = work_dir / "schema.list"
        schema_list.write_text("\n".join(schema_lines) + "\n")
        parts = max(1, min(jobs, len(data_lines)))
        data_lists = [work_dir / f"data-{part}.list" for part in range(parts)]
        for part, data_list in enumerate(data_lists):
            data_list.write_text("\n".join(data_lines[part::parts]) + "\n")
        _run([pg_restore, "--section=pre-data", "--no-owner", f"--use-list={schema_list}", database, str(dump)], env,
             "pg_restore (schema)")
        _restore_in_replica_mode(dump, data_lists, env, pg_restore, psql)
        _run([pg_restore, "--section=post-data", "--no-owner", f"--jobs={jobs}", f"--use-list={schema_list}", database,
              str(dump)], env, "pg_restore (indexes, keys, triggers, policies)")
    return skipped


# --- the access model after the data is in ----------------------------------------------------------------------

@dataclass
class AccessCheck:
    """The evidence of a restore's access check: what was compared and what differs."""

    statements: int = 0
    statement_errors: list[str] = field(default_factory=list)
    comparison: access.Comparison = field(default_factory=access.Comparison)
    probes: int = 0
    probe_differences: list[str] = field(default_factory=list)
    sign_in_differences: list[str] = field(default_factory=list)

    @property
    def differences(self) -> list[str]:
        return [*self.comparison.differences, *self.probe_differences, *self.sign_in_differences]

    def to_dict(self) -> dict[str, Any]:
        return {**self.comparison.to_dict(), "reconcile_statements": self.statements,
                "reconcile_errors": self.statement_errors[:20], "probes_compared": self.probes,
                "probe_differences": self.probe_differences[:50], "sign_in_differences": self.sign_in_differences}


def check_access(
    target: PgTarget, model: Mapping[str, Any], row_counts: Mapping[str, int], *, supabase: bool,
    owner_map: Mapping[str, str] | None = None, reconcile: bool = True, platform_event_triggers: bool = True,
) -> AccessCheck:
    """Make the target's access equal to ``model`` (unless ``reconcile`` is off), owners included, then
    compare it, the row-visibility probes and the sign-in data with what the backup recorded."""
    scope = access.Scope(supabase=supabase, platform_event_triggers=platform_event_triggers)
    result = AccessCheck()
    with target.connect(autocommit=True) as connection:
        cursor = connection.cursor()
        user = cursor.execute("SELECT current_user").fetchone()[0]
        recorded_format = model.get("format", 1)  # the target is read as the backup was
        failed: set[str] = set()

        if reconcile:
            # a table-wide REVOKE also takes a column's grants: compute again after each round
            for _ in range(RECONCILE_ROUNDS):
                statements = access.reconcile_statements(model, access.capture(cursor, recorded_format), scope,
                                                         restoring_user=user,
                                                         owner_map=owner_map)
                statements = [s for s in statements if s.as_string(connection) not in failed]
                if not statements:
                    break
                result.statements += len(statements)
                for statement in statements:
                    try:
                        cursor.execute(statement)
                    except psycopg.Error as error:
                        failed.add(statement.as_string(connection))
                        result.statement_errors.append(f"{statement.as_string(connection)}: {first_line(error)}")
            for problem in result.statement_errors:
                log.warning("access model: %s", problem)
        result.comparison = access.compare(model, access.capture(cursor, recorded_format), scope, owner_map=owner_map)
        recorded_probes = {key: value for key, value in model.get("probes", {}).items()
                           if scope.probes(key.split(" as ")[0])}
        with connection.transaction():
            found = access.probe(cursor, row_counts, model.get("probe_users", []), supabase=supabase)
        result.probes = len(recorded_probes)
        result.probe_differences = access.compare_probes(recorded_probes, found)
        if model.get("sign_in"):
            result.sign_in_differences = access.compare_sign_in(model["sign_in"],
                                                                access.sign_in_data(cursor, model.get("probe_users", [])))
    return result
