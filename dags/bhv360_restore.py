"""Manual restore of any backup type, triggered with the seed's JSON (conf) or POST /api/backup/restore."""

from datetime import timedelta

from airflow.sdk import Param, chain

from bhv360_backup.dag_factory import bhv360_dag
from bhv360_backup.operators.restore import RestoreOperator, RestoreValidateOperator

RESTORE_DOC = """
### Restore

Trigger with a JSON conf in the seed's shape, e.g.
`{"type": "full", "paths": {"database": "latest", "storage": "latest", "config": "latest"}}`.
Each path: `latest`, a backup id (`20261126T000000Z`), a path inside the local root, or
`s3://<bucket>/<type>/<id>`.

* **validate**: checks the request, resolves the backups, verifies every artifact's sha256 (local copy
  first, else S3), checks the targets. Nothing is written. With `dry_run` this is all that runs.
* **restore**: database (`pg_restore` into `target_conn_id`, default the scratch `bhv360_restore_db`),
  storage (into a folder under the backup root's `restore/`, or a Supabase project), config; then
  checks row counts, checksums and objects against the backup and reports to e-mail and `#ops`.

Restoring into `bhv360_db` or the `bhv360_supabase` project needs `confirm_overwrite: true`.
"""

with bhv360_dag(
    "bhv360_restore",
    cron=None,
    timeout=timedelta(hours=24),
    doc_md=RESTORE_DOC,
    tags=["restore"],
    retries=0,
    params={
        "type": Param("database", enum=["database", "storage", "config", "full"], title="Backup type",
                      description="What to restore."),
        "paths": Param({"database": "latest"}, type="object", title="Paths",
                       description="Per component (database, storage, config): 'latest', a backup id, a path in "
                                   "the local root, or s3://<bucket>/<type>/<id>."),
        "target_conn_id": Param("bhv360_restore_db", type="string", title="Target database connection",
                                description="Where the database goes; bhv360_db (production) needs confirm_overwrite."),
        "confirm_overwrite": Param(False, type="boolean", title="Confirm overwrite",
                                   description="Allow restoring over production (bhv360_db, bhv360_supabase) and "
                                               "setting bhv360_ Variables."),
        "dry_run": Param(False, type="boolean", title="Dry run", description="Validate and show the plan only."),
        "supabase_target": Param(False, type="boolean", title="Fresh Supabase project",
                                 description="Restore the database the Supabase way: non-reserved roles, schema of "
                                             "non-internal schemas, data incl. auth and storage."),
        "storage_target": Param("folder", type="string", title="Storage target",
                                description="'folder' (under the backup root's restore/), 'folder:/path', 'supabase' "
                                            "(production, needs confirm_overwrite) or 'supabase:<conn id>'."),
        "restore_roles": Param(False, type="boolean", title="Restore roles",
                               description="Apply the backup's roles.sql first."),
        "no_owner": Param(True, type="boolean", title="No owner",
                          description="pg_restore --no-owner; the access step then gives every object its recorded "
                                      "owner (grants are always restored)."),
        "owner_map": Param({}, type="object", title="Owner map",
                           description="Recorded owner -> role on the target, for owners the target lacks "
                                       "(otherwise refused, unless restore_roles creates them)."),
        "target_project_conn_id": Param(None, type=["null", "string"], title="Target project (config)",
                                         description="A Management API connection: apply the config backup's "
                                                     "Supabase project settings and Edge Functions to that project."),
        "point_in_time": Param(None, type=["null", "string"], format="date-time", title="Point in time",
                               description="Restore the state as it was at this moment (ISO 8601 with a zone): the "
                                           "newest backups before it plus the incremental segments up to it."),
        "accept_earlier_point": Param(False, type="boolean", title="Accept an earlier point",
                                      description="When the incremental chain cannot reach the point in time (a gap, "
                                                  "a schema change), restore the last exact moment before it."),
    },
):
    chain(RestoreValidateOperator(task_id="validate"), RestoreOperator(task_id="restore"))
