"""The database restore's plans without a server: which dump entries each Supabase step takes, and
every reason a target cannot take a backup, found before anything is written."""

from __future__ import annotations

from bhv360_backup.restore.database import TargetState, non_reserved_roles_sql, preflight, supabase_lists

TOC = """;
; Archive created at 2026-11-26 01:00:03 UTC
2; 3079 41679 EXTENSION - pgcrypto
3389; 0 0 COMMENT - EXTENSION pgcrypto
3390; 0 0 COMMENT - EXTENSION pg_trgm
215; 1259 41716 TABLE public incidents postgres
3391; 0 0 ACL public TABLE incidents postgres
3382; 0 41716 TABLE DATA public incidents postgres
3383; 0 41800 TABLE DATA auth users supabase_auth_admin
3384; 0 41801 TABLE DATA auth schema_migrations supabase_auth_admin
3385; 0 41802 TABLE DATA realtime messages supabase_admin
3236; 2606 41720 CONSTRAINT public incidents incidents_pkey postgres
3234; 1259 41721 INDEX public incidents_title_idx postgres
3379; 3256 41725 POLICY public incidents org_incidents postgres
3380; 6104 41723 PUBLICATION - supabase_realtime postgres
3381; 6106 41724 PUBLICATION TABLE public supabase_realtime incidents postgres
2071; 826 41722 DEFAULT ACL public DEFAULT PRIVILEGES FOR TABLES postgres
3400; 1259 41900 TABLE auth users supabase_auth_admin
""".splitlines()


def names(lines):
    return [line.split(" ", 3)[3] for line in lines]


def test_supabase_steps_skip_extensions_with_their_comments_and_existing_publications():
    schema, data = supabase_lists(TOC, existing_publications={"supabase_realtime"})
    assert names(schema) == [
        "TABLE public incidents postgres", "ACL public TABLE incidents postgres",
        "CONSTRAINT public incidents incidents_pkey postgres", "INDEX public incidents_title_idx postgres",
        "POLICY public incidents org_incidents postgres",
        "PUBLICATION TABLE public supabase_realtime incidents postgres",
        "DEFAULT ACL public DEFAULT PRIVILEGES FOR TABLES postgres"]
    assert names(data) == ["TABLE DATA public incidents postgres", "TABLE DATA auth users supabase_auth_admin"]


def test_reserved_roles_are_never_created_or_altered():
    roles = "CREATE ROLE anon;\nALTER ROLE anon WITH NOLOGIN;\nCREATE ROLE bhv360_app;\nGRANT authenticated TO bhv360_app;\n"
    # a membership of the project's own role is the project's; the reserved role itself is untouched
    assert non_reserved_roles_sql(roles) == "CREATE ROLE bhv360_app;\nGRANT authenticated TO bhv360_app;\n"


def state(**changes):
    values = dict(user="postgres", superuser=True, roles=frozenset({"postgres", "anon", "authenticated"}),
                  extensions=frozenset({"plpgsql"}), available_extensions=frozenset({"pgcrypto", "pg_trgm"}),
                  publications=frozenset(), schemas=frozenset({"public", "auth", "storage"}))
    return TargetState(**{**values, **changes})


SUMMARY = {"extensions": [{"name": "pgcrypto", "schema": "extensions", "version": "1.3"},
                          {"name": "postgis", "schema": "extensions", "version": "3.4"}],
           "owners": ["postgres", "bhv360_owner"], "roles": ["anon", "authenticated", "service_role", "bhv360_app"],
           "objects": 30, "probes": 12}


def test_every_reason_a_target_cannot_take_the_backup_is_named_before_writing():
    problems = preflight(SUMMARY, state(schemas=frozenset({"public"})), supabase=True, restore_roles=False)
    assert problems[0].startswith("supabase_target is set but the target has no auth and storage schemas")
    assert "the target lacks Supabase's role(s) service_role" in problems[1]
    assert "the target lacks the role(s) bhv360_app" in problems[2] and "restore_roles" in problems[2]
    assert problems[3] == ("extension postgis (in schema extensions) is not available on the target: enable it in "
                           "the Supabase dashboard (Database > Extensions)")
    assert len(problems) == 4  # pgcrypto is available: it is created; a missing owner is mapped, not refused


def test_restore_roles_creates_the_projects_own_roles_but_never_reserved_ones():
    problems = preflight({**SUMMARY, "extensions": []}, state(), supabase=False, restore_roles=True)
    assert problems == [problems[0]] and "service_role" in problems[0] and "bhv360_app" not in problems[0]


def test_a_backup_made_before_access_models_is_not_checked():
    assert preflight(None, state(), supabase=False, restore_roles=False) == []
