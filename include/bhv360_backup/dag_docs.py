"""Documentation the backup DAGs show in the Airflow UI (``doc_md``)."""

DATABASE_DOC = """
### Database backup (daily 01:00)

`pg_dump --format=custom` of `bhv360_db` plus its roles (`pg_dumpall --roles-only`, no passwords),
streamed once into the local folder (`bhv360_backup_root`) and the S3 bucket (`bhv360_s3_bucket`),
read back and checked with `pg_restore --list`, then published by `manifest.json`.

* **dump**: writes, verifies, publishes. A retry reuses what an earlier try finished.
* **verify**: both locations hold the same manifest and every artifact with its size.
* **retention**: removes backups older than `bhv360_retention_days` (never the newest 3).

Failures alert `bhv360_alert_emails` and Slack `#ops`. Safe to *Clear* any task and re-run.
"""

CONFIG_DOC = """
### Configuration backup (daily 02:00)

One deterministic `config.json` (sorted keys; unchanged configuration, same sha256): Storage bucket
definitions; extensions, roles (no passwords), `ALTER ... SET` settings, row-level security and
policies, publications of `bhv360_db`; rows of the tables in `bhv360_config_tables`; the `bhv360_`
Variables (secret-looking values masked); files under `bhv360_config_paths`.
A section that cannot be read fails the task and names the section.
"""

STORAGE_DOC = """
### Storage backup (Sundays 03:00)

A snapshot of every Supabase Storage bucket (source: `bhv360_storage_source`, default `supabase`
with connection `bhv360_supabase`). Objects are stored once by sha256 under `blobs/` in each
location and shared between snapshots; unchanged objects (same etag, size, updated time) are not
downloaded again. The snapshot's index `objects.jsonl.gz` and the bucket definitions are in
`storage/<backup_id>/`.

* **sync**: lists, copies changed objects in parallel (`bhv360_storage_parallelism`), publishes.
* **verify**: both locations hold the manifest, the index and every blob it references.
* **retention**: removes expired snapshots, then blobs no snapshot references (48 h grace).
"""

FULL_DOC = """
### Full backup (Saturdays 04:00)

A database dump, a storage snapshot and a config snapshot in one run, each a regular backup of its
type, then `full/<backup_id>/` naming the three with their manifests' sha256, the database snapshot
time and the storage listing's start and end, and a cross-check of `storage.objects` against the
snapshot. The set exists only when all three components are complete. Retention keeps the
components of every kept full set.
"""

INCREMENTAL_DOC = """
### Incremental backup (every `bhv360_incremental_interval_minutes` minutes, default 5)

Reads the changes committed in `bhv360_db` since the last run from the logical replication slot
`bhv360_incremental_slot` (built-in `test_decoding` plugin, no publication) and writes them as one
segment, whole transactions in commit order, to both locations (`incremental/<id>/`), with the Storage
objects those changes created or changed. The slot moves only after both copies verified: a failed run
loses nothing, the next one captures the same changes again. A restore with `point_in_time` replays the
segments over the newest database backup before that moment.

* **capture**: checks what the source needs (wal_level logical, a REPLICATION role, a free slot, the
  direct connection), creates the slot on its first run, writes, verifies, publishes, moves the slot.
* **needs_new_chain** / **new_chain**: after a schema or access change, or when the capture created its slot, a database backup starts a new chain at once.

Segments a kept database backup needs are kept; the database DAG's retention removes the others.
Switch off: set `bhv360_incremental_interval_minutes` to 0 and drop the slot (`bhv360-backup drop-slot`).
"""
