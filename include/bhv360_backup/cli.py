"""``bhv360-backup``: list, verify and restore backups without Airflow (for disaster recovery).

The same validated restore as the ``bhv360_restore`` DAG, configured by environment variables
(or ``--settings FILE`` with ``NAME=value`` lines) instead of Airflow connections:

- ``BHV360_BACKUP_ROOT`` (default ``/var/backups/bhv360``), ``BHV360_S3_BUCKET`` (``bhv360-backups``),
  ``BHV360_S3_ENDPOINT_URL`` (for S3-compatible services; empty for AWS) and the usual
  ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_DEFAULT_REGION``;
- the target database through libpq's ``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGPASSWORD``, ``PGDATABASE``;
- a Supabase storage target through ``SUPABASE_URL`` and ``SUPABASE_SERVICE_ROLE_KEY``;
- encrypted backups through ``BHV360_AGE_IDENTITY_FILE``, an ``age-keygen`` key file (one or more keys).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from pyrage.x25519 import Identity
from rich import box, filesize
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from bhv360_backup import inventory
from bhv360_backup.errors import BackupError
from bhv360_backup.locations import LocalLocation, Location, S3Location
from bhv360_backup.postgres.client import PgTarget, find_client, server_major
from bhv360_backup.repository.encryption import parse_identities
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.restore.plan import build_plan
from bhv360_backup.restore.request import parse_request
from bhv360_backup.restore.run import RestoreTargets, check_targets, execute_plan
from bhv360_backup.restore.storage import FolderSink, SupabaseSink
from bhv360_backup.sources.changes import ChangeSource
from bhv360_backup.sources.storage import SupabaseStorageSource
from bhv360_backup.streams import ProgressLog

log = logging.getLogger("bhv360-backup")


def load_settings_file(path: Path) -> None:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise BackupError(f"{path}:{number}: expected NAME=value")
        os.environ.setdefault(name.strip(), value.strip())


def locations_from_env(skip_s3: bool = False) -> list[Location]:
    root = Path(os.environ.get("BHV360_BACKUP_ROOT", "/var/backups/bhv360"))
    found: list[Location] = [LocalLocation(root)]
    if not skip_s3:
        import boto3

        from bhv360_backup.s3_listing import with_fast_listings

        endpoint = os.environ.get("BHV360_S3_ENDPOINT_URL") or None
        client = with_fast_listings(boto3.Session()).client("s3", endpoint_url=endpoint)
        found.append(S3Location(client, os.environ.get("BHV360_S3_BUCKET", "bhv360-backups")))
    return found


def target_from_env() -> PgTarget:
    missing = [name for name in ("PGHOST", "PGDATABASE") if not os.environ.get(name)]
    if missing:
        raise BackupError(f"set {', '.join(missing)} (and PGUSER, PGPASSWORD, PGPORT) for the target database")
    return PgTarget(host=os.environ["PGHOST"], port=int(os.environ.get("PGPORT", "5432")),
                    dbname=os.environ["PGDATABASE"], user=os.environ.get("PGUSER", "postgres"),
                    password=os.environ.get("PGPASSWORD"))


def identities_from_env() -> tuple[Identity, ...]:
    path = os.environ.get("BHV360_AGE_IDENTITY_FILE")
    if not path:
        return ()
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise BackupError(f"BHV360_AGE_IDENTITY_FILE: cannot read {path}: {error.strerror}") from None
    return parse_identities(text, f"BHV360_AGE_IDENTITY_FILE {path}")


def print_entries(entries: list[inventory.InventoryEntry], as_json: bool, locations: list[Location]) -> None:
    """The backups as a table for people, or as JSON (every artifact and its sha256) for scripts."""
    if as_json:
        print(json.dumps(inventory.as_json(entries), indent=2))
        return
    console = Console(width=None if sys.stdout.isatty() else 200)
    if not entries:
        console.print("no complete backups")
        return
    table = Table(box=box.SIMPLE_HEAD, header_style="bold")
    for column in ("type", "backup id", "completed (UTC)"):
        table.add_column(column, no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    for location in locations:
        table.add_column(location.name)
    table.add_column("contents")
    states = {"verified": "[green]complete[/]", "missing": "[dim]missing[/]"}
    for entry in entries:
        table.add_row(entry.type, entry.backup_id, entry.completed_at[:19].replace("T", " "),
                      filesize.decimal(entry.size),
                      *(states.get(entry.locations[location.name], f"[red]{escape(entry.locations[location.name])}[/]")
                        for location in locations),
                      entry.data or f"{len(entry.artifacts)} artifact(s)")
    console.print(table)


def command_list(args: argparse.Namespace) -> int:
    types = [BackupType.parse(args.type)] if args.type else list(BackupType)
    locations = locations_from_env(args.local_only)
    print_entries(inventory.build(locations, types, deep=False), args.json, locations)
    return 0


def command_verify(args: argparse.Namespace) -> int:
    types = [BackupType.parse(args.type)] if args.type else list(BackupType)
    locations = locations_from_env(args.local_only)
    entries = inventory.build(locations, types, deep=True)
    if args.id:
        entries = [e for e in entries if e.backup_id == args.id]
    print_entries(entries, args.json, locations)
    return 0 if entries and all(e.verified for e in entries) else 1


def command_restore(args: argparse.Namespace) -> int:
    root = os.environ.get("BHV360_BACKUP_ROOT", "/var/backups/bhv360")
    body = {"type": args.type, "paths": dict(pair.split("=", 1) for pair in args.path), "dry_run": args.dry_run,
            "supabase_target": args.supabase_target, "restore_roles": args.restore_roles,
            "point_in_time": args.point_in_time, "accept_earlier_point": args.accept_earlier_point}
    request = parse_request(body, backup_root=root, bucket=os.environ.get("BHV360_S3_BUCKET", "bhv360-backups"))
    names = set(request.paths)
    database = target_from_env() if names & {"database", "config"} else None
    sink = None
    if "storage" in names or (args.supabase and "config" in names):
        if args.supabase:
            missing = [name for name in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY") if not os.environ.get(name)]
            if missing:
                raise BackupError(f"--supabase restores storage into the project SUPABASE_URL names: set "
                                  f"{' and '.join(missing)} (in the environment or the --settings file)")
            url, key = os.environ["SUPABASE_URL"], os.environ["SUPABASE_SERVICE_ROLE_KEY"]
            sink = SupabaseSink(url, key, SupabaseStorageSource(url, key))
        elif args.storage_folder:
            sink = FolderSink(Path(args.storage_folder))
        else:
            raise BackupError("a storage restore needs --storage-folder PATH or --supabase")
    work_dir = Path(args.work_dir)
    locations = locations_from_env(args.local_only)
    pg_restore = find_client("pg_restore", server_major(database)) if database else None
    targets_text = {"database": database.describe() if database else "-", "storage": sink.describe() if sink else "-",
                    "config": f"settings rows into the target database, files into {work_dir}"}
    identities = identities_from_env()
    plan = build_plan(request, locations, targets_text, pg_restore, identities)
    by_name = {location.name: location for location in locations}
    targets = RestoreTargets(database=database, sink=sink, work_dir=work_dir, identities=identities)
    check_targets(plan, request, by_name, targets)
    print("\n".join(plan.describe()))
    if request.dry_run:
        print("dry run: validation passed, nothing restored")
        return 0
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True)) as progress:
        ProgressLog.display = progress
        try:
            report = execute_plan(plan, request, by_name, targets)
        finally:
            ProgressLog.display = None
    print(json.dumps({k: v for k, v in report.items() if k != "plan"}, indent=2, default=str))
    return 0


def command_drop_slot(args: argparse.Namespace) -> int:
    """Switch incremental backups off cleanly: drop the capture slot, so the source stops keeping WAL for it."""
    source = ChangeSource(target_from_env(), args.slot)
    if source.drop():
        print(f"dropped replication slot {args.slot} of {source.target.describe()}; set "
              "bhv360_incremental_interval_minutes to 0 so the capture does not create it again")
    else:
        print(f"replication slot {args.slot} does not exist in {source.target.describe()}: nothing to drop")
    return 0


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="bhv360-backup", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    main.add_argument("--settings", type=Path, help="file of NAME=value lines (environment variables)")
    main.add_argument("--local-only", action="store_true", help="use only the local location (no S3)")
    sub = main.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="list complete backups and where they are")
    listing.add_argument("--type", choices=[t.value for t in BackupType])
    listing.add_argument("--json", action="store_true", help="JSON for scripts: every artifact with its sha256")
    listing.set_defaults(run=command_list)
    verify = sub.add_parser("verify", help="read every artifact back and check its sha256")
    verify.add_argument("--type", choices=[t.value for t in BackupType])
    verify.add_argument("--id", help="only this backup id")
    verify.add_argument("--json", action="store_true", help="JSON for scripts: each copy's state, every artifact")
    verify.set_defaults(run=command_verify)
    restore = sub.add_parser("restore", help="validated restore, as the bhv360_restore DAG does")
    restore.add_argument("--type", required=True, choices=["database", "storage", "config", "full"])
    restore.add_argument("--path", action="append", default=[], metavar="COMPONENT=PATH",
                         help="e.g. database=latest, storage=20261122T020000Z (repeat per component)")
    restore.add_argument("--storage-folder", help="restore storage objects into this folder")
    restore.add_argument("--supabase", action="store_true", help="restore storage into SUPABASE_URL")
    restore.add_argument("--supabase-target", action="store_true", help="database into a fresh Supabase project")
    restore.add_argument("--restore-roles", action="store_true")
    restore.add_argument("--dry-run", action="store_true")
    restore.add_argument("--point-in-time", metavar="ISO-8601",
                         help="restore the state as it was at this moment, e.g. 2026-11-26T14:05:00+01:00")
    restore.add_argument("--accept-earlier-point", action="store_true",
                         help="if the incremental chain cannot reach --point-in-time, restore its last exact moment")
    restore.add_argument("--work-dir", default="./bhv360-restore", help="staging and config files")
    restore.set_defaults(run=command_restore)
    drop = sub.add_parser("drop-slot", help="drop the incremental capture's replication slot (PGHOST…: the source)")
    drop.add_argument("--slot", default="bhv360_backup")
    drop.set_defaults(run=command_drop_slot)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=Console(stderr=True), show_path=False)])
    try:
        if args.settings:
            load_settings_file(args.settings)
        return args.run(args)
    except BackupError as error:
        print(f"bhv360-backup: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
