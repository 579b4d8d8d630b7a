"""Benchmark: the restore of a database backup against raw ``pg_restore --jobs 2`` of the same dump.

Makes one database backup (local folder + SeaweedFS (or, with --s3 moto, moto) on loopback) of the benchmark database
(default about 1 GB, built as ``bench_pg_dump.py`` builds it), then in one run, several rounds each:

- raw ``pg_restore --jobs 2 --no-owner -d <fresh database> <the local dump file>``,
- the restore DAG's database restore (validation: sha256 and ``pg_restore --list`` of the copy;
  ``pg_restore``; row counts and checksums compared) from the local location,
- the same from the S3 location (the dump is downloaded, checked, then restored),
- the hand-written restore from the S3 copy: ``rclone copyto`` of the dump to a local file (rclone's
  parallel ranged reads: faster here than ``aws s3 cp``, 0.32-0.40 s against 0.81 s for 287 MB), then the
  same raw ``pg_restore --jobs 2`` (the download timed on its own too),

each into a fresh database, and prints the median times and ratios: the S3 restore's ratio to the raw
restore from a local file (the target) and to the hand-written one, which pays the same download.

    .venv/bin/python benchmarks/bench_restore.py --size-mb 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

from _common import MachineLoad, add_s3_option, rclone_s3_env, require_tool, start_s3, work_folder
from bench_pg_dump import SERVER, ensure_database

from bhv360_backup.locations import LocalLocation, S3Location
from bhv360_backup.postgres.client import PgTarget
from bhv360_backup.producers.database import dump_database
from bhv360_backup.repository.database import DUMP_ARTIFACT  # the default compression keeps this name
from bhv360_backup.repository.layout import BackupType, artifact_key
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.restore.plan import choose_copy
from bhv360_backup.restore.request import parse_request
from bhv360_backup.restore.run import RestoreTargets, restore_database_component

BACKUP_ID = "20260101T000000Z"


def fresh_database(name: str):
    """An empty database, the server's dirty pages of the previous round written out first (a checkpoint
    and the kernel's write-back), so that no restore pays for the one before it."""
    with SERVER.connect(autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {name}")
        connection.execute("CHECKPOINT")
    os.sync()
    return SERVER.with_dbname(name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    add_s3_option(parser)
    args = parser.parse_args()

    source = ensure_database(args.size_mb)
    machine = MachineLoad()
    s3 = start_s3(args.s3)
    try:
        with work_folder("bench-restore-", "here", 0) as work:
            measure(args, source, s3, work)
    finally:
        s3.stop()
        with SERVER.connect(autocommit=True) as connection:
            connection.execute("DROP DATABASE IF EXISTS bhv360_bench_restore WITH (FORCE)")
    print(machine.describe())


def measure(args: argparse.Namespace, source: PgTarget, s3, work: Path) -> None:
    """A backup into both locations, then rounds of the raw restore, ours from each copy and the
    hand-written one from the S3 copy, and the medians."""
    s3.create_bucket("bench")
    local, cloud = LocalLocation(work / "backups"), S3Location(s3.client(), "bench")
    print("making the backup ...", flush=True)
    dump_database(source, BackupWriter([local, cloud], BackupType.DATABASE, BACKUP_ID), pg_bin_dir="",
                  dag_id="bench", run_id="bench")
    dump = local.path_of(artifact_key(BackupType.DATABASE, BACKUP_ID, DUMP_ARTIFACT))
    request = parse_request({"type": "database", "paths": {"database": BACKUP_ID}}, backup_root=str(work), bucket="-")
    locations = {"local": local, "s3": cloud}

    rclone, rclone_env = require_tool("rclone", "rclone"), rclone_s3_env(s3)
    download = work / "downloaded.dump"

    def raw(dump_file: Path = dump) -> float:
        target = fresh_database("bhv360_bench_restore")
        started = time.monotonic()
        subprocess.run(["pg_restore", "--jobs=2", "--no-owner", "--no-acl", "-h", target.host, "-p", str(target.port),
                        "-U", target.user, "-d", target.dbname, str(dump_file)], check=True)
        return time.monotonic() - started

    def rclone_then_raw() -> tuple[float, float]:
        """The hand-written restore from the S3 copy: the download's seconds, and the whole's."""
        download.unlink(missing_ok=True)
        started = time.monotonic()
        subprocess.run([rclone, "copyto", "-q", f"src:bench/{artifact_key(BackupType.DATABASE, BACKUP_ID, DUMP_ARTIFACT)}",
                        str(download)], env=rclone_env, check=True)
        downloaded = time.monotonic() - started
        return downloaded, downloaded + raw(download)

    def ours(location_name: str) -> float:
        target = fresh_database("bhv360_bench_restore")
        started = time.monotonic()
        component = choose_copy([locations[location_name]], BackupType.DATABASE, BACKUP_ID, "pg_restore")
        restore_database_component(component, request, locations,
                                   RestoreTargets(database=target, sink=None, work_dir=work / "restore"))
        return time.monotonic() - started

    results: dict[str, list[float]] = {"raw": [], "local": [], "s3": [], "download": [], "rclone+raw": []}
    for number in range(1, args.rounds + 1):
        results["raw"].append(raw())
        results["local"].append(ours("local"))
        results["s3"].append(ours("s3"))
        downloaded, hand_written = rclone_then_raw()
        results["download"].append(downloaded)
        results["rclone+raw"].append(hand_written)
        print(f"round {number}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in results.items()), flush=True)
    dump_mb = dump.stat().st_size / 1e6

    medians = {name: statistics.median(times) for name, times in results.items()}
    print(f"\ndatabase {args.size_mb} MB, dump {dump_mb:.0f} MB, "
          f"{args.rounds} rounds, medians")
    print(f"raw pg_restore --jobs 2              {medians['raw']:7.2f} s")
    print(f"restore DAG's restore, local copy    {medians['local']:7.2f} s  ratio {medians['local'] / medians['raw']:.3f}"
          " (target <= 1.10)")
    print(f"restore DAG's restore, S3 copy       {medians['s3']:7.2f} s  ratio {medians['s3'] / medians['raw']:.3f}"
          " (target <= 1.05)")
    print(f"rclone copyto, then raw pg_restore   {medians['rclone+raw']:7.2f} s  ratio {medians['rclone+raw'] / medians['raw']:.3f}"
          f" (the download alone {medians['download']:.2f} s, {dump_mb / medians['download']:.0f} MB/s)")
    print(f"    S3 restore against the hand-written one: ratio {medians['s3'] / medians['rclone+raw']:.3f}")


if __name__ == "__main__":
    main()
