"""What every Supabase project's database has, owned by the platform rather than the project.

From Supabase's published database set-up (supabase/postgres) and the CLI's `db dump`, which leaves
the internal schemas out of a project's schema.
"""

# Schemas the platform owns; their objects are the platform's, not the project's, except the data of
# auth and storage and what the project adds to their tables (policies, triggers).
SUPABASE_INTERNAL_SCHEMAS = frozenset({
    "_analytics", "_realtime", "_supavisor", "auth", "cron", "dbdev", "extensions", "graphql",
    "graphql_public", "information_schema", "net", "pgbouncer", "pgmq", "pgsodium", "pgsodium_masks",
    "pgtle", "realtime", "repack", "storage", "supabase_functions", "supabase_migrations", "tiger",
    "tiger_data", "topology", "vault",
})
SUPABASE_DATA_SCHEMAS = frozenset({"auth", "storage"})
# Roles every Supabase project has: never created or altered by a restore.
SUPABASE_RESERVED_ROLES = frozenset({
    "anon", "authenticated", "authenticator", "dashboard_user", "pgbouncer", "pgsodium_keyholder",
    "pgsodium_keyiduser", "pgsodium_keymaker", "postgres", "service_role", "supabase_admin",
    "supabase_auth_admin", "supabase_functions_admin", "supabase_read_only_user", "supabase_realtime_admin",
    "supabase_replication_admin", "supabase_storage_admin", "supabase_etl_admin",
})
# The roles whose default privileges are the platform's (every project's postgres is the project's own).
SUPABASE_PLATFORM_ROLES = SUPABASE_RESERVED_ROLES - {"postgres"}
# Migration history the platform manages; never restored.
SUPABASE_SKIPPED_TABLES = frozenset({
    "auth.schema_migrations", "storage.migrations", "supabase_functions.migrations",
    "supabase_migrations.schema_migrations",
})


def project_data(table: str) -> bool:
    """Whether a table's rows (``schema.name``) are the project's, so a restore into a new project carries
    them: the project's own schemas, and ``auth``'s and ``storage``'s data without the migration history."""
    schema = table.split(".", 1)[0]
    in_scope = schema not in SUPABASE_INTERNAL_SCHEMAS or schema in SUPABASE_DATA_SCHEMAS
    return in_scope and table not in SUPABASE_SKIPPED_TABLES
