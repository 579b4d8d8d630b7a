"""The database restore's plans without a server: which dump entries each Supabase step takes, and
every reason a target cannot take a backup, found before anything is written."""

from __future__ import annotations

from dataclasses import replace

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
    assert problems[4].startswith("the owner role(s) bhv360_owner of the backup's objects are missing in the target")
    assert len(problems) == 5  # pgcrypto is available: it is created


def test_every_object_gets_its_recorded_owner_or_an_explicit_one_with_no_more_rights():
    summary = {**SUMMARY, "extensions": [], "roles": [], "owner_rights": {"bhv360_owner": ""}}
    as_postgres = state(user="postgres", superuser=False, roles=frozenset({"postgres", "bhv360_owner", "app"}),
                        member_of=frozenset({"postgres"}), rights={"postgres": "bypassrls"})
    assert preflight(summary, as_postgres, supabase=False, restore_roles=False) == [
        "postgres may not give objects to role(s) bhv360_owner: grant them to it first (GRANT bhv360_owner TO "
        "postgres; on a hosted project postgres may do that for the project's own roles), or restore as a superuser"]
    assert preflight(summary, replace(as_postgres, member_of=frozenset({"postgres", "bhv360_owner"})),
                     supabase=False, restore_roles=False) == []
    problems = preflight(summary, as_postgres, supabase=False, restore_roles=False,
                         owner_map={"bhv360_owner": "postgres"})
    assert problems == ["owner_map gives objects to a role with more rights than their recorded owner (bhv360_owner -> "
                        "postgres (bypassrls)): a view or SECURITY DEFINER function it owns would show rows its "
                        "recorded owner could not; map to a role with no more than the recorded owner's rights"]
    assert preflight(summary, replace(as_postgres, member_of=frozenset({"postgres", "app"})), supabase=False,
                     restore_roles=False, owner_map={"bhv360_owner": "app"}) == []


def test_restore_roles_creates_the_projects_own_roles_but_never_reserved_ones():
    problems = preflight({**SUMMARY, "extensions": []}, state(), supabase=False, restore_roles=True)
    assert problems == [problems[0]] and "service_role" in problems[0] and "bhv360_app" not in problems[0]


def test_a_backup_made_before_access_models_is_not_checked():
    assert preflight(None, state(), supabase=False, restore_roles=False) == []
