"""The access model of a database: who may do what to which object, and what each API role sees.

Captured with every database backup (in the dump's own snapshot) and again from a restored target,
compared object by object, and reconciled where a restore left the target different: grants lost
with ``--no-acl`` or widened by the target's default privileges, row-level security, policies,
function security, default privileges, publication membership and triggers.

Objects are keyed ``"<kind> <schema>.<name>"``; an ACL is ``{grantee: ["SELECT", "UPDATE*", ...]}``
(``*``: with grant option; ``PUBLIC`` for everyone), with the owner's implicit privileges spelled out.
Row visibility is probed the way Supabase's API runs queries: as ``anon``, as ``authenticated`` with
the JWT claims of a few sampled users (``request.jwt.claims`` and the older ``request.jwt.claim.*``,
so ``auth.uid()`` and policies reading the claims work), and as ``service_role``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from bhv360_backup.postgres.supabase import (
    SUPABASE_DATA_SCHEMAS,
    SUPABASE_INTERNAL_SCHEMAS,
    SUPABASE_PLATFORM_ROLES,
    SUPABASE_RESERVED_ROLES,
)

log = logging.getLogger(__name__)

MODEL_FORMAT = 2  # 2: expressions read with an empty search_path (every name schema-qualified)
API_ROLES = ("anon", "authenticated", "service_role")
PROBE_USERS = 3
PROBE_MAX_ROWS = 1_000_000
_USER_SCHEMAS = ("n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' "
                 "AND n.nspname NOT LIKE 'pg\\_temp%'")
_RELATION_ACL = "coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::\"char\", c.relowner))"
_ACL = ("coalesce((SELECT jsonb_agg(jsonb_build_array(CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
        "ELSE pg_get_userbyid(a.grantee) END, a.privilege_type, a.is_grantable)) FROM aclexplode({acl}) a), '[]')")
_RELATION_KINDS = {"r": "table", "p": "table", "v": "view", "m": "materialized view", "S": "sequence",
                   "f": "foreign table"}
_POLICY_COMMANDS = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "*": "ALL"}
_ROUTINE_KINDS = {"f": "function", "p": "procedure"}
_DEFAULT_ACL_TYPES = {"r": "tables", "S": "sequences", "f": "functions", "T": "types", "n": "schemas"}

QUERIES = {
    "schemas": f"""
        SELECT n.nspname, pg_get_userbyid(n.nspowner), {_ACL.format(acl="coalesce(n.nspacl, acldefault('n', n.nspowner))")}
        FROM pg_namespace n WHERE {_USER_SCHEMAS}""",
    "relations": f"""
        SELECT n.nspname, c.relname, c.relkind::text, pg_get_userbyid(c.relowner),
               {_ACL.format(acl=_RELATION_ACL)},
               c.relrowsecurity, c.relforcerowsecurity
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND NOT c.relispartition AND {_USER_SCHEMAS}""",
    "columns": f"""
        SELECT n.nspname, c.relname, a.attname, {_ACL.format(acl="a.attacl")}
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE a.attacl IS NOT NULL AND a.attnum > 0 AND NOT a.attisdropped AND {_USER_SCHEMAS}""",
    "policies": f"""
        SELECT n.nspname, c.relname, p.polname, p.polpermissive, p.polcmd::text,
               ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r) END FROM unnest(p.polroles) r
                     ORDER BY 1),
               pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
        FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {_USER_SCHEMAS}""",
    "routines": f"""
        SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.prokind::text,
               pg_get_userbyid(p.proowner), {_ACL.format(acl="coalesce(p.proacl, acldefault('f', p.proowner))")},
               p.prosecdef, coalesce(p.proconfig, '{{}}')
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.prokind IN ('f', 'p') AND {_USER_SCHEMAS}
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                          AND d.deptype = 'e')""",
    "default_acls": f"""
        SELECT pg_get_userbyid(d.defaclrole), n.nspname, d.defaclobjtype::text, {_ACL.format(acl="d.defaclacl")}
        FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace""",
    "publications": """
        SELECT p.pubname, p.puballtables, t.schemaname, t.tablename
        FROM pg_publication p LEFT JOIN pg_publication_tables t ON t.pubname = p.pubname""",
    "triggers": f"""
        SELECT n.nspname, c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled::text, fn.nspname
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_proc f ON f.oid = t.tgfoid JOIN pg_namespace fn ON fn.oid = f.pronamespace
        WHERE NOT t.tgisinternal AND {_USER_SCHEMAS}""",
    "event_triggers": """
        SELECT e.evtname, e.evtevent, e.evtenabled::text, coalesce(e.evttags, '{}'), n.nspname, p.proname
        FROM pg_event_trigger e JOIN pg_proc p ON p.oid = e.evtfoid JOIN pg_namespace n ON n.oid = p.pronamespace""",
    "extensions": """
        SELECT e.extname, n.nspname, e.extversion FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
        WHERE e.extname <> 'plpgsql'""",
}


def acl(entries: list[list[Any]]) -> dict[str, list[str]]:
    """``aclexplode`` rows as ``{grantee: sorted privileges}``, ``*`` marking a grant option."""
    found: dict[str, set[str]] = {}
    for grantee, privilege, grantable in entries:
        found.setdefault(grantee, set()).add(privilege + ("*" if grantable else ""))
    return {grantee: sorted(privileges) for grantee, privileges in sorted(found.items())}


def _rows(cursor: psycopg.Cursor, name: str) -> list[tuple]:
    return cursor.execute(QUERIES[name]).fetchall()


@contextmanager
def search_path(cursor: psycopg.Cursor, path: str) -> Iterator[None]:
    """The session's ``search_path`` set to ``path`` for the block, then put back."""
    previous = cursor.execute("SELECT current_setting('search_path')").fetchone()[0]
    cursor.execute("SELECT set_config('search_path', %s, false)", [path])
    try:
        yield
    finally:
        cursor.execute("SELECT set_config('search_path', %s, false)", [previous])


def capture(cursor: psycopg.Cursor, model_format: int = MODEL_FORMAT) -> dict[str, Any]:
    """The access model as the cursor's transaction sees it (the backup's snapshot, or a restored target).
    Expressions (policies, trigger definitions, argument types) are read with an empty ``search_path``, so
    the same object reads the same whoever reads it; ``model_format`` 1 reads them as 0.3 did (with the
    session's own), to compare with a model recorded then."""
    if model_format >= 2:
        with search_path(cursor, ""):
            return _capture(cursor, model_format)
    return _capture(cursor, model_format)


def _capture(cursor: psycopg.Cursor, model_format: int) -> dict[str, Any]:
    objects: dict[str, dict[str, Any]] = {}
    for schema, owner, entries in _rows(cursor, "schemas"):
        objects[f"schema {schema}"] = {"owner": owner, "acl": acl(entries)}
    tables: dict[tuple[str, str], dict[str, Any]] = {}
    for schema, name, kind, owner, entries, rls, forced in _rows(cursor, "relations"):
        entry: dict[str, Any] = {"owner": owner, "acl": acl(entries)}
        if kind in ("r", "p"):
            entry.update(rls={"enabled": rls, "forced": forced}, policies={}, triggers={}, columns={}, publications=[])
            tables[(schema, name)] = entry
        objects[f"{_RELATION_KINDS[kind]} {schema}.{name}"] = entry
    for schema, name, column, entries in _rows(cursor, "columns"):
        if (schema, name) in tables:
            tables[(schema, name)]["columns"][column] = acl(entries)
    for schema, name, policy, permissive, command, roles, using, check in _rows(cursor, "policies"):
        tables[(schema, name)]["policies"][policy] = {
            "permissive": permissive, "command": _POLICY_COMMANDS[command], "roles": list(roles),
            "using": using, "with_check": check}
    for schema, name, trigger, definition, enabled, function_schema in _rows(cursor, "triggers"):
        if (schema, name) in tables:
            tables[(schema, name)]["triggers"][trigger] = {"definition": definition, "enabled": enabled,
                                                           "function_schema": function_schema}
    for schema, name, args, kind, owner, entries, definer, config in _rows(cursor, "routines"):
        objects[f"{_ROUTINE_KINDS[kind]} {schema}.{name}({args})"] = {
            "owner": owner, "acl": acl(entries), "security_definer": definer, "config": sorted(config)}
    for role, schema, kind, entries in _rows(cursor, "default_acls"):
        objects[f"default privileges of {role} in {schema or '*'} on {_DEFAULT_ACL_TYPES.get(kind, kind)}"] = {
            "role": role, "schema": schema, "type": _DEFAULT_ACL_TYPES.get(kind, kind), "acl": acl(entries)}
    publications: dict[str, dict[str, Any]] = {}
    for name, all_tables, schema, table in _rows(cursor, "publications"):
        publications.setdefault(name, {"all_tables": all_tables})
        if schema and (schema, table) in tables and not all_tables:
            tables[(schema, table)]["publications"].append(name)
    for entry in tables.values():
        entry["publications"].sort()
    for name, publication in publications.items():
        objects[f"publication {name}"] = publication
    for name, event, enabled, tags, schema, function in _rows(cursor, "event_triggers"):
        objects[f"event trigger {name}"] = {"event": event, "enabled": enabled, "tags": sorted(tags),
                                            "function": f"{schema}.{function}", "function_schema": schema}
    owners = sorted({entry["owner"] for entry in objects.values() if entry.get("owner")})
    return {"format": model_format, "objects": dict(sorted(objects.items())),
            "extensions": [{"name": n, "schema": s, "version": v} for n, s, v in sorted(_rows(cursor, "extensions"))],
            "owner_rights": dict(cursor.execute(
                "SELECT rolname, CASE WHEN rolsuper THEN 'superuser' WHEN rolbypassrls THEN 'bypassrls' ELSE '' END "
                "FROM pg_roles WHERE rolname = ANY(%s) ORDER BY 1", [owners]).fetchall())}


RIGHTS_RANK = {"": 0, "bypassrls": 1, "superuser": 2}  # how much of every table a role sees past RLS


# --- behaviour: row visibility as the API roles, and whether users can still sign in -------------------------

def _exists(cursor: psycopg.Cursor, regclass: str) -> bool:
    return cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [regclass]).fetchone()[0]


def _columns(cursor: psycopg.Cursor, regclass: str) -> set[str]:
    """The columns of a table, none when it does not exist (an auth schema of another shape)."""
    return {row[0] for row in cursor.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
        [regclass]).fetchall()}


def probe_users(cursor: psycopg.Cursor) -> list[str]:
    """A few users' ids, the same for the same users (chosen by a hash of their id)."""
    if "id" not in _columns(cursor, "auth.users"):
        return []
    return [row[0] for row in cursor.execute(
        "SELECT id::text FROM auth.users ORDER BY md5(id::text) LIMIT %s", [PROBE_USERS]).fetchall()]


def identities(cursor: psycopg.Cursor, users: list[str]) -> list[tuple[str, str, str | None]]:
    """``(label, role, user id)`` of each identity a probe runs as; only API roles that exist."""
    present = {row[0] for row in cursor.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                                                [list(API_ROLES)]).fetchall()}
    found = []
    if "anon" in present:
        found.append(("anon", "anon", None))
    if "authenticated" in present:
        found += [(f"authenticated:{user}", "authenticated", user) for user in users]
    if "service_role" in present:
        found.append(("service_role", "service_role", None))
    return found


_RLS_TABLES_AND_VIEWS_OVER_THEM = f"""
    SELECT n.nspname, c.relname, ARRAY[n.nspname || '.' || c.relname]
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND c.relrowsecurity AND {_USER_SCHEMAS}
    UNION ALL
    SELECT n.nspname, c.relname, array_agg(DISTINCT tn.nspname || '.' || t.relname)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_rewrite r ON r.ev_class = c.oid
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
    JOIN pg_class t ON t.oid = d.refobjid AND t.oid <> c.oid AND t.relkind IN ('r', 'p') AND t.relrowsecurity
    JOIN pg_namespace tn ON tn.oid = t.relnamespace
    WHERE c.relkind = 'v' AND {_USER_SCHEMAS}
    GROUP BY 1, 2 ORDER BY 1, 2"""


def _probed_tables(cursor: psycopg.Cursor, row_counts: Mapping[str, int], supabase: bool) -> list[tuple[str, str]]:
    """Tables with row-level security, and the views that read them (a view runs as its owner: who owns it
    decides what it shows), each no larger than the probes allow."""
    scope = Scope(supabase=supabase)
    return [(schema, name) for schema, name, tables in cursor.execute(_RLS_TABLES_AND_VIEWS_OVER_THEM).fetchall()
            if max(row_counts.get(table, 0) for table in tables) <= PROBE_MAX_ROWS and scope.probes(f"{schema}.{name}")]


def probe(cursor: psycopg.Cursor, row_counts: Mapping[str, int], users: list[str], *,
          supabase: bool = False) -> dict[str, int | str]:
    """Rows visible in each RLS table to each API identity, inside the cursor's transaction (savepoints
    undo every role and claim): ``{"<table> as <identity>": count | "denied" | "error: …"}``."""
    results: dict[str, int | str] = {}
    for label, role, user in identities(cursor, users):
        claims = {"role": role, **({"sub": user, "aud": "authenticated"} if user else {})}
        for schema, name in _probed_tables(cursor, row_counts, supabase):
            key = f"{schema}.{name} as {label}"
            cursor.execute("SAVEPOINT bhv360_probe")
            try:
                cursor.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
                cursor.execute("SELECT set_config('request.jwt.claims', %s, true), "
                               "set_config('request.jwt.claim.sub', %s, true), "
                               "set_config('request.jwt.claim.role', %s, true)",
                               [json.dumps(claims), user or "", role])
                results[key] = cursor.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(name))).fetchone()[0]
            except psycopg.errors.InsufficientPrivilege:
                results[key] = "denied"
            except psycopg.Error as error:
                results[key] = f"error: {str(error).strip().splitlines()[0][:200]}"
            finally:
                cursor.execute("ROLLBACK TO SAVEPOINT bhv360_probe")
    return results


def sign_in_data(cursor: psycopg.Cursor, users: list[str]) -> dict[str, Any]:
    """What lets users sign in after a restore: password hashes (a digest of them all, and of the
    sampled users' each) and the identities and refresh tokens, counted."""
    if not {"id", "encrypted_password"} <= _columns(cursor, "auth.users"):
        return {}
    count, digest = cursor.execute(
        "SELECT count(*), md5(coalesce(string_agg(id::text || ':' || coalesce(encrypted_password, ''), ',' "
        "ORDER BY id), '')) FROM auth.users").fetchone()
    sampled = dict(cursor.execute("SELECT id::text, md5(encrypted_password) FROM auth.users WHERE id::text = ANY(%s)",
                                  [users]).fetchall())
    data: dict[str, Any] = {"users": count, "password_digest": digest, "sampled_password_digests": sampled}
    for table in ("auth.identities", "auth.refresh_tokens"):
        if _exists(cursor, table):
            data[table] = cursor.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
                *map(sql.Identifier, table.split(".")))).fetchone()[0]
    return data


def record(cursor: psycopg.Cursor, row_counts: Mapping[str, int]) -> dict[str, Any]:
    """Everything a database backup records about access: the model, the probes and the sign-in data."""
    model = capture(cursor)
    users = probe_users(cursor)
    model["probe_users"] = users
    model["probes"] = probe(cursor, row_counts, users)
    model["sign_in"] = sign_in_data(cursor, users)
    return model


# --- comparison: which objects a restore restored, and how they differ ---------------------------------------

def schema_of(key: str) -> str | None:
    """The schema a model key's object lives in (None for those of no schema). A routine's key holds its
    arguments, spaces and all: the name is what follows the kind."""
    if key.startswith(("publication ", "event trigger ", "default privileges ")):
        return None
    name = key[len(kind_of(key)) + 1:]
    return name if key.startswith("schema ") else name.split(".", 1)[0]


@dataclass(frozen=True)
class Scope:
    """Which recorded objects and attributes a restore restores: all of them (plain), or, into a
    fresh Supabase project, the project's own schemas in full plus, on the platform's ``auth`` and
    ``storage`` tables, row-level security, policies and the project's triggers."""

    supabase: bool = False
    platform_event_triggers: bool = True  # False: the platform's were left out (a non-superuser restored)

    def probes(self, table: str) -> bool:
        """Whether the rows of ``table`` (``schema.name``) are restored, so its probes must match."""
        schema = table.split(".", 1)[0]
        return not self.supabase or schema not in SUPABASE_INTERNAL_SCHEMAS or schema in SUPABASE_DATA_SCHEMAS

    def attributes(self, key: str, entry: Mapping[str, Any]) -> tuple[str, ...] | None:
        """The attributes of ``key`` to compare, or None when the restore does not own the object."""
        everything = tuple(name for name in entry if name != "function_schema")
        if key.startswith("event trigger ") and entry["function_schema"] in SUPABASE_INTERNAL_SCHEMAS \
                and (self.supabase or not self.platform_event_triggers):
            return None  # the platform's: never restored into a project, nor by a non-superuser
        if not self.supabase:
            return everything
        if key.startswith("publication "):
            return ()  # the platform's supabase_realtime exists already; membership is on the tables
        if key.startswith("event trigger "):
            return everything
        if key.startswith("default privileges "):
            schema = entry["schema"]
            platform = entry["role"] in SUPABASE_PLATFORM_ROLES
            return everything if schema and schema not in SUPABASE_INTERNAL_SCHEMAS and not platform else None
        schema = schema_of(key)
        if schema not in SUPABASE_INTERNAL_SCHEMAS:
            return everything
        if key.startswith("schema ") and schema in SUPABASE_DATA_SCHEMAS:
            return ("api_acl",)
        if key.startswith("table ") and schema in SUPABASE_DATA_SCHEMAS:
            return ("rls", "policies", "project_triggers")
        return None


def _derived(entry: Mapping[str, Any], attribute: str) -> Any:
    if attribute == "api_acl":
        return {role: privileges for role, privileges in entry["acl"].items() if role in API_ROLES}
    if attribute == "project_triggers":
        return {name: trigger for name, trigger in entry.get("triggers", {}).items()
                if trigger["function_schema"] not in SUPABASE_INTERNAL_SCHEMAS}
    return entry.get(attribute)


def _renamed(value: Any, owners: Mapping[str, str]) -> Any:
    """An ACL (or a column's ACLs) with the recorded owner's name replaced by the owner it maps to."""
    if not owners or not isinstance(value, dict):
        return value
    if all(isinstance(v, list) for v in value.values()):
        merged: dict[str, set[str]] = {}
        for grantee, privileges in value.items():
            merged.setdefault(owners.get(grantee, grantee), set()).update(privileges)
        return {grantee: sorted(privileges) for grantee, privileges in sorted(merged.items())}
    return {key: _renamed(inner, owners) for key, inner in value.items()}


@dataclass
class Comparison:
    compared: int = 0
    differences: list[str] = field(default_factory=list)
    owners_mapped: dict[str, str] = field(default_factory=dict)  # the request's explicit owner map

    def to_dict(self) -> dict[str, Any]:
        return {"objects_compared": self.compared, "differences": self.differences[:100],
                "owners_mapped": self.owners_mapped}


def target_only(recorded: Mapping[str, Any], actual: Mapping[str, Any], scope: Scope) -> Iterator[str]:
    """The keys of objects the target has and the backup does not, that the restore answers for: in a
    Supabase project the platform's schemas are the platform's. A default-privileges entry that grants
    nothing beyond the built-in defaults is no difference."""
    for key, entry in actual["objects"].items():
        if key in recorded["objects"] or not scope.attributes(key, entry):
            continue
        if scope.supabase and schema_of(key) in SUPABASE_INTERNAL_SCHEMAS:
            continue
        if key.startswith("default privileges ") and entry["acl"] == _built_in_default(entry):
            continue
        yield key


def _built_in_default(entry: Mapping[str, Any]) -> dict[str, list[str]]:
    """What a default-privileges entry's ACL becomes once every grant to others is revoked: the role's
    own, and PUBLIC's where PostgreSQL grants it by default (functions and types)."""
    return {grantee: privileges for grantee, privileges in entry["acl"].items()
            if grantee == entry["role"] or (grantee == "PUBLIC" and entry["type"] in ("functions", "types"))}


def _owner_mapping(entry: Mapping[str, Any], owner_map: Mapping[str, str]) -> dict[str, str]:
    """``{recorded owner: owner on the target}`` where the request maps this object's owner, else empty."""
    return {entry["owner"]: owner_map[entry["owner"]]} if entry.get("owner") in owner_map else {}


def compare(recorded: Mapping[str, Any], actual: Mapping[str, Any], scope: Scope, *,
            owner_map: Mapping[str, str] | None = None) -> Comparison:
    """Every difference between the recorded model and the target's, in both directions, for the
    objects in ``scope``. ``owner_map`` names the role that owns, on the target, what the backup
    records as owned by another (a request's explicit mapping)."""
    owner_map = owner_map or {}
    result = Comparison(owners_mapped=dict(owner_map))
    found = actual["objects"]
    for key in target_only(recorded, actual, scope):
        result.differences.append(f"{key}: in the target only, not in the backup ({_short(found[key])})")
    for key, entry in recorded["objects"].items():
        attributes = scope.attributes(key, entry)
        if attributes is None:
            continue
        result.compared += 1
        target = found.get(key)
        if target is None:
            if attributes:
                result.differences.append(f"{key}: missing in the target")
            continue
        owners = _owner_mapping(entry, owner_map)
        for attribute in attributes:
            want = _renamed(_derived(entry, attribute), owners if attribute in ("acl", "columns", "api_acl") else {})
            if attribute == "owner":
                want = owners.get(entry["owner"], entry["owner"])
            have = _derived(target, attribute)
            if want != have:
                result.differences.append(f"{key}: {attribute} is {_short(have)}, the backup has {_short(want)}")
    return result


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 300 else text[:297] + "..."


def compare_probes(recorded: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    return [f"{key}: {actual.get(key, 'not probed')} rows visible, the backup's snapshot {value}"
            for key, value in sorted(recorded.items()) if actual.get(key) != value]


def compare_sign_in(recorded: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    problems = []
    for name, value in recorded.items():
        if actual.get(name) != value:
            what = "password hashes" if "password" in name else name
            problems.append(f"sign-in data: {what} differ from the backup")
    return problems


# --- reconciliation: make the target's access what the backup recorded ---------------------------------------

_KINDS = ("default privileges", "event trigger", "materialized view", "foreign table", "publication", "procedure",
          "function", "sequence", "schema", "table", "view")
_GRANT_OBJECT = {"table": "TABLE", "view": "TABLE", "materialized view": "TABLE", "foreign table": "TABLE",
                 "sequence": "SEQUENCE", "function": "FUNCTION", "procedure": "PROCEDURE", "schema": "SCHEMA"}
_ALTER_OBJECT = {"table": "TABLE", "view": "VIEW", "materialized view": "MATERIALIZED VIEW",
                 "foreign table": "FOREIGN TABLE", "sequence": "SEQUENCE", "function": "FUNCTION",
                 "procedure": "PROCEDURE", "schema": "SCHEMA"}


def kind_of(key: str) -> str:
    return next(kind for kind in _KINDS if key.startswith(kind + " "))


def sql_name(key: str) -> sql.Composable:
    """The SQL name of a schema, relation or routine model key."""
    kind = kind_of(key)
    name = key[len(kind) + 1:]
    if kind == "schema":
        return sql.Identifier(name)
    schema, _, rest = name.partition(".")
    if kind in ("function", "procedure"):
        routine, _, args = rest.partition("(")
        return sql.SQL("{}.{}({})").format(sql.Identifier(schema), sql.Identifier(routine), sql.SQL(args[:-1]))
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(rest))


def _grantee(name: str) -> sql.Composable:
    return sql.SQL("PUBLIC") if name in ("PUBLIC", "public") else sql.Identifier(name)


def _privileges(names: set[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL(name) for name in sorted(names))


def acl_statements(target: sql.Composable, want: Mapping[str, list[str]], have: Mapping[str, list[str]],
                   column: str | None = None) -> Iterator[sql.Composed]:
    """REVOKE what ``target`` (``TABLE x``, ``TABLES``…) has beyond ``want`` and GRANT what it lacks,
    grant options included; ``column`` for a column's privileges."""
    columns = sql.SQL(" ({})").format(sql.Identifier(column)) if column else sql.SQL("")
    for grantee in sorted(set(want) | set(have)):
        wanted, had = set(want.get(grantee, [])), set(have.get(grantee, []))
        wanted_plain, had_plain = {p.rstrip("*") for p in wanted}, {p.rstrip("*") for p in had}
        wanted_option = {p[:-1] for p in wanted if p.endswith("*")}
        had_option = {p[:-1] for p in had if p.endswith("*")}
        who = _grantee(grantee)
        if revoke := had_plain - wanted_plain:
            yield sql.SQL("REVOKE {}{} ON {} FROM {}").format(_privileges(revoke), columns, target, who)
        if revoke_option := (had_option - wanted_option) - revoke:
            yield sql.SQL("REVOKE GRANT OPTION FOR {}{} ON {} FROM {}").format(_privileges(revoke_option), columns,
                                                                             target, who)
        if grant := (wanted_plain - had_plain) - wanted_option:
            yield sql.SQL("GRANT {}{} ON {} TO {}").format(_privileges(grant), columns, target, who)
        if grant_option := wanted_option - had_option:
            yield sql.SQL("GRANT {}{} ON {} TO {} WITH GRANT OPTION").format(_privileges(grant_option), columns,
                                                                             target, who)


def _policy_statement(table: sql.Composable, name: str, policy: Mapping[str, Any]) -> sql.Composed:
    parts = [sql.SQL("CREATE POLICY {} ON {} AS {} FOR {} TO {}").format(
        sql.Identifier(name), table, sql.SQL("PERMISSIVE" if policy["permissive"] else "RESTRICTIVE"),
        sql.SQL(policy["command"]), sql.SQL(", ").join(_grantee(role) for role in policy["roles"]))]
    if policy["using"] is not None:
        parts.append(sql.SQL(" USING ({})").format(sql.SQL(policy["using"])))
    if policy["with_check"] is not None:
        parts.append(sql.SQL(" WITH CHECK ({})").format(sql.SQL(policy["with_check"])))
    return sql.Composed(parts)


def _replacement(drop: sql.Composable | None, create: sql.Composable | None) -> sql.Composable:
    """Drop and create as one statement string, so one transaction: a replacement that fails leaves the old."""
    return sql.SQL("; ").join(statement for statement in (drop, create) if statement is not None)


def _table_statements(key: str, want: Mapping[str, Any], have: Mapping[str, Any],
                      attributes: tuple[str, ...]) -> Iterator[sql.Composable]:
    """Statements that give a table its recorded RLS flags, policies, triggers and publications."""
    name = sql_name(key)
    if "rls" in attributes and want["rls"] != have["rls"]:
        yield sql.SQL("ALTER TABLE {} {} ROW LEVEL SECURITY").format(
            name, sql.SQL("ENABLE" if want["rls"]["enabled"] else "DISABLE"))
        yield sql.SQL("ALTER TABLE {} {} ROW LEVEL SECURITY").format(
            name, sql.SQL("FORCE" if want["rls"]["forced"] else "NO FORCE"))
    if "policies" in attributes:
        for policy in sorted(set(want["policies"]) | set(have["policies"])):
            if want["policies"].get(policy) == have["policies"].get(policy):
                continue
            yield _replacement(
                sql.SQL("DROP POLICY {} ON {}").format(sql.Identifier(policy), name) if policy in have["policies"] else None,
                _policy_statement(name, policy, want["policies"][policy]) if policy in want["policies"] else None)
    trigger_attribute = next((a for a in ("triggers", "project_triggers") if a in attributes), None)
    if trigger_attribute:
        wanted, had = _derived(want, trigger_attribute), _derived(have, trigger_attribute)
        for trigger in sorted(set(wanted) | set(had)):
            if wanted.get(trigger) == had.get(trigger):
                continue
            yield _replacement(
                sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(trigger), name) if trigger in had else None,
                sql.SQL(wanted[trigger]["definition"]) if trigger in wanted else None)
    if "publications" in attributes:
        for publication in sorted(set(want["publications"]) - set(have["publications"])):
            yield sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(sql.Identifier(publication), name)
        for publication in sorted(set(have["publications"]) - set(want["publications"])):
            yield sql.SQL("ALTER PUBLICATION {} DROP TABLE {}").format(sql.Identifier(publication), name)


def _routine_statements(key: str, want: Mapping[str, Any], have: Mapping[str, Any]) -> Iterator[sql.Composable]:
    routine = sql.SQL("{} {}").format(sql.SQL(_ALTER_OBJECT[kind_of(key)]), sql_name(key))
    if want["security_definer"] != have["security_definer"]:
        yield sql.SQL("ALTER {} {}").format(routine, sql.SQL("SECURITY DEFINER" if want["security_definer"]
                                                             else "SECURITY INVOKER"))
    if want["config"] != have["config"]:
        yield sql.SQL("ALTER {} RESET ALL").format(routine)
        for setting in want["config"]:
            variable, _, value = setting.partition("=")
            yield sql.SQL("ALTER {} SET {} TO {}").format(routine, sql.Identifier(variable), sql.SQL(", ").join(
                sql.Literal(part.strip()) for part in value.split(",")))


def _default_acl_statements(want: Mapping[str, Any], have: Mapping[str, Any] | None) -> Iterator[sql.Composed]:
    schema = sql.SQL(" IN SCHEMA {}").format(sql.Identifier(want["schema"])) if want["schema"] else sql.SQL("")
    prefix = sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {}{} ").format(sql.Identifier(want["role"]), schema)
    for statement in acl_statements(sql.SQL(want["type"].upper()), want["acl"], (have or {}).get("acl", {})):
        yield sql.Composed([prefix, statement])


def _reserved_for(role: str, restoring_user: str) -> bool:
    """Whether ``role``'s default privileges are the platform's: never altered by a restore."""
    return role in SUPABASE_RESERVED_ROLES and role != restoring_user


def reconcile_statements(recorded: Mapping[str, Any], actual: Mapping[str, Any], scope: Scope, *,
                         restoring_user: str, owner_map: Mapping[str, str] | None = None) -> list[sql.Composable]:
    """The statements that make the target's access equal to the recorded one: every object owned by its
    recorded owner (or the one ``owner_map`` names for it), its grants, and no default privileges the
    backup lacks. Event triggers and publications are only compared: creating them takes rights a restore
    does not have. An object given a new owner gets its grants in the next round, computed again."""
    owner_map = owner_map or {}
    statements: list[sql.Composable] = []
    found = actual["objects"]
    for key in target_only(recorded, actual, scope):
        entry = found[key]
        if key.startswith("default privileges ") and not _reserved_for(entry["role"], restoring_user):
            statements += _default_acl_statements({**entry, "acl": _built_in_default(entry)}, entry)
    for key, entry in recorded["objects"].items():
        attributes = scope.attributes(key, entry)
        target = found.get(key)
        kind = kind_of(key)
        if not attributes or kind in ("event trigger", "publication"):
            continue
        if kind == "default privileges":
            if not _reserved_for(entry["role"], restoring_user) and (target is None or entry["acl"] != target["acl"]):
                statements += _default_acl_statements(entry, target)
            continue  # a reserved role's defaults are never altered: a difference is reported
        if target is None:
            continue  # a missing object is the restore's failure, named by the comparison
        name = sql_name(key)
        mapping = _owner_mapping(entry, owner_map)
        owner = mapping.get(entry.get("owner"), entry.get("owner"))
        if "owner" in attributes and target["owner"] != owner:
            statements.append(sql.SQL("ALTER {} {} OWNER TO {}").format(sql.SQL(_ALTER_OBJECT[kind]), name,
                                                                        sql.Identifier(owner)))
            continue
        grant_target = sql.SQL("{} {}").format(sql.SQL(_GRANT_OBJECT[kind]), name)
        if "acl" in attributes:
            statements += acl_statements(grant_target, _renamed(entry["acl"], mapping), target["acl"])
        if "api_acl" in attributes:
            statements += acl_statements(grant_target, _derived(entry, "api_acl"), _derived(target, "api_acl"))
        if "columns" in attributes:
            for column in sorted(set(entry["columns"]) | set(target["columns"])):
                statements += acl_statements(grant_target, _renamed(entry["columns"].get(column, {}), mapping),
                                             target["columns"].get(column, {}), column)
        if kind == "table":
            statements += _table_statements(key, entry, target, attributes)
        if kind in ("function", "procedure"):
            statements += _routine_statements(key, entry, target)
    return statements
