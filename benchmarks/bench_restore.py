"""Benchmark: the restore of a database backup against raw ``pg_restore --jobs 2`` of the same dump.

Makes one database backup (local folder + SeaweedFS (or, with --s3 moto, moto) on loopback) of the benchmark database
(default about 1 GB, built as ``bench_pg_dump.py`` builds it), then in one run, several rounds each:

- raw ``pg_restore --jobs 2 --no-owner -d <fresh database> <the local dump file>``,
- the restore DAG's database restore (validation: sha256 and ``pg_restore --list`` of the copy;
  ``pg_restore``; row counts and checksums compared) from the local location,
- the same from the S3 location (the dump is downloaded, checked, then restored),

each into a fresh database, and prints the median times and ratios.

    .venv/bin/python benchmarks/bench_restore.py --size-mb 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import WORK, add_s3_option, start_s3
from bench_pg_dump import SERVER, ensure_database

from bhv360_backup.locations import LocalLocation, S3Location
from bhv360_backup.producers.database import dump_database
from bhv360_backup.repository.database import DUMP_ARTIFACT  # the default compression keeps this name
from bhv360_backup.repository.layout import BackupType, artifact_key
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.restore.plan import choose_copy
from bhv360_backup.restore.request import parse_request
from bhv360_backup.restore.run import RestoreTargets, restore_database_component

BACKUP_ID = "20260101T000000Z"


def fresh_database(name: str):
    with SERVER.connect(autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {name}")
    return SERVER.with_dbname(name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    add_s3_option(parser)
    args = parser.parse_args()

    source = ensure_database(args.size_mb)
    WORK.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-restore-", dir=WORK))
    s3 = start_s3(args.s3)
    s3.create_bucket("bench")
    local, cloud = LocalLocation(work / "backups"), S3Location(s3.client(), "bench")
    print("making the backup ...", flush=True)
    dump_database(source, BackupWriter([local, cloud], BackupType.DATABASE, BACKUP_ID), pg_bin_dir="",
                  dag_id="bench", run_id="bench")
    dump = local.path_of(artifact_key(BackupType.DATABASE, BACKUP_ID, DUMP_ARTIFACT))
    request = parse_request({"type": "database", "paths": {"database": BACKUP_ID}}, backup_root=str(work), bucket="-")
    locations = {"local": local, "s3": cloud}

    def raw() -> float:
        target = fresh_database("bhv360_bench_restore")
        started = time.monotonic()
        subprocess.run(["pg_restore", "--jobs=2", "--no-owner", "--no-acl", "-h", target.host, "-p", str(target.port),
                        "-U", target.user, "-d", target.dbname, str(dump)], check=True)
        return time.monotonic() - started

    def ours(location_name: str) -> float:
        target = fresh_database("bhv360_bench_restore")
        started = time.monotonic()
        component = choose_copy([locations[location_name]], BackupType.DATABASE, BACKUP_ID, "pg_restore")
        restore_database_component(component, request, locations,
                                   RestoreTargets(database=target, sink=None, work_dir=work / "restore"))
        return time.monotonic() - started

    results: dict[str, list[float]] = {"raw": [], "local": [], "s3": []}
    for number in range(1, args.rounds + 1):
        results["raw"].append(raw())
        results["local"].append(ours("local"))
        results["s3"].append(ours("s3"))
        print(f"round {number}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in results.items()), flush=True)
    dump_mb = dump.stat().st_size / 1e6
    s3.stop()
    with SERVER.connect(autocommit=True) as connection:
        connection.execute("DROP DATABASE IF EXISTS bhv360_bench_restore WITH (FORCE)")
    subprocess.run(["rm", "-rf", str(work)], check=True)

    medians = {name: statistics.median(times) for name, times in results.items()}
    print(f"\ndatabase {args.size_mb} MB, dump {dump_mb:.0f} MB, "
          f"{args.rounds} rounds, medians")
    print(f"raw pg_restore --jobs 2              {medians['raw']:7.2f} s")
    print(f"restore DAG's restore, local copy    {medians['local']:7.2f} s  ratio {medians['local'] / medians['raw']:.3f}"
          " (target <= 1.10)")
    print(f"restore DAG's restore, S3 copy       {medians['s3']:7.2f} s  ratio {medians['s3'] / medians['raw']:.3f}")


if __name__ == "__main__":
    main()
