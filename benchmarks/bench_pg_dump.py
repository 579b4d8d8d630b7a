"""Benchmark: the database backup against the baselines an administrator would use.

(a) raw ``pg_dump --format=custom -f FILE`` (pg_dump's default compression, the package's choice
    before 0.3)  vs  the backup writing to the local location only, with ``--compression`` (default:
    the package's default): time and dump size
(b) ``pg_dump -Fc | tee FILE | aws s3 cp - s3://...`` with the same compression (``-Z N``, or ``-Z0 |
    zstd -N -T0``)  vs  the backup writing to both locations

Both sides run as child processes in the same run, several rounds each; the script prints the
median times, their ratio, throughput, and each side's peak RSS. Our side's time is also given without
the interpreter's start-up (imports and boto3's S3 model, about 0.6 s here, before ``pg_dump`` can
start; an Airflow worker has paid it before the operator runs). It also measures the local S3 test
server's own ingest rate, which may be the ceiling for (b) here.

With ``--encrypt`` our side encrypts to a fresh age key and each baseline pipes through the ``age``
command: ``pg_dump -Fc | age -r KEY > FILE`` and ``pg_dump -Fc | age -r KEY | tee FILE | aws s3 cp -``.

    .venv/bin/python benchmarks/bench_pg_dump.py --size-mb 1000 --rounds 3 [--encrypt] [--compression zstd:3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from _common import MachineLoad, add_s3_option, loopback_s3_client, peak_rss_mb, start_s3, timed, work_folder
from pyrage import x25519

from bhv360_backup.demo.data import create_demo_database, organisations_for_mb
from bhv360_backup.postgres.client import PgTarget
from bhv360_backup.repository.compression import DEFAULT_DUMP_COMPRESSION, DumpCompression
from bhv360_backup.repository.encryption import parse_recipients

SERVER = PgTarget(host="127.0.0.1", port=5432, dbname="postgres", user="postgres")
BUCKET = "bench"


def ensure_database(size_mb: int) -> PgTarget:
    name = f"bhv360_bench_{size_mb}mb"
    with SERVER.connect(autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            connection.execute(f"CREATE DATABASE {name}")
    target = SERVER.with_dbname(name)
    with target.connect(autocommit=True) as connection:
        if not connection.execute("SELECT to_regclass('public.staff')").fetchone()[0]:
            print(f"building {name} ...", flush=True)
            started = time.monotonic()
            create_demo_database(connection, organisations_for_mb(size_mb))
            print(f"  built in {time.monotonic() - started:.0f} s", flush=True)
        size = connection.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    print(f"database {name}: {size / 1e6:.0f} MB on disk")
    return target


def run_backup_child(target: PgTarget, root: Path, s3_conn: str | None, recipient: str | None,
                     compression: DumpCompression) -> None:
    """The child side: the package's database backup, as the operator runs it, minus Airflow."""
    from bhv360_backup.locations import LocalLocation, S3Location
    from bhv360_backup.producers.database import dump_database
    from bhv360_backup.repository.layout import BackupType
    from bhv360_backup.repository.writer import BackupWriter

    locations = [LocalLocation(root)]
    if s3_conn:
        conn = json.loads(s3_conn)
        client = loopback_s3_client(conn["extra"]["endpoint_url"], conn["login"], conn["password"])
        locations.append(S3Location(client, BUCKET))
    backup_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    recipients = parse_recipients(recipient, "--encrypt") if recipient else ()
    writer = BackupWriter(locations, BackupType.DATABASE, backup_id, recipients)
    started = time.monotonic()  # imports and boto3's S3 model before it: start-up, which a worker has paid
    dump_database(target, writer, pg_bin_dir="", dag_id="bench", run_id="bench", compression=compression)
    writer.raise_for_failures()
    Path(os.environ["BENCH_REPORT_FILE"]).write_text(json.dumps({"peak_rss_mb": peak_rss_mb(),
                                                                 "seconds": time.monotonic() - started}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--encrypt", action="store_true", help="encrypt with age, against age-piped baselines")
    parser.add_argument("--compression", default=str(DEFAULT_DUMP_COMPRESSION), help="gzip:N or zstd:N")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    add_s3_option(parser)
    args = parser.parse_args()
    compression = DumpCompression.parse(args.compression, "--compression")
    if args.child:
        spec = json.loads(args.child)
        run_backup_child(PgTarget(**spec["target"]), Path(spec["root"]), spec.get("s3"), spec.get("recipient"),
                         compression)
        return
    target = ensure_database(args.size_mb)
    machine = MachineLoad()
    s3 = start_s3(args.s3)
    try:
        with work_folder("bench-pg-dump-", "here", 0) as work:
            measure(args, compression, target, s3, work)
    finally:
        s3.stop()
    print(machine.describe())


def measure(args: argparse.Namespace, compression: DumpCompression, target: PgTarget, s3, work: Path) -> None:
    """The rounds of the raw dump, ours to local, the hand-written pipeline and ours to both, and the medians."""
    same_compression = (f"--compress={compression.level}" if compression.zstd_level is None
                        else f"--compress=0 | zstd -q -{compression.level} -T0")
    recipient = str(x25519.Identity.generate().to_public()) if args.encrypt else None
    age_pipe = f"| age -r {recipient} " if recipient else ""

    s3.create_bucket(BUCKET)
    env = {**os.environ, "PGHOST": target.host, "PGPORT": str(target.port), "PGUSER": target.user,
           "PGDATABASE": target.dbname, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret",
           "AWS_DEFAULT_REGION": "eu-west-1"}
    spec = {"target": {"host": target.host, "port": target.port, "dbname": target.dbname, "user": target.user},
            "recipient": recipient}

    report_file = work / "report.json"

    dump_sizes: list[int] = []

    def ours(s3_conn: str | None) -> tuple[float, int, float]:
        """Seconds of the whole child, its peak RSS, and its seconds without the interpreter's start-up."""
        root = work / f"ours-{time.monotonic_ns()}"
        child = json.dumps({**spec, "root": str(root), "s3": s3_conn})
        elapsed = timed([sys.executable, __file__, "--child", child, "--compression", str(compression)],
                        env={**os.environ, "BENCH_REPORT_FILE": str(report_file)})
        dump_sizes.extend(path.stat().st_size for path in root.glob("database/*/database.dump*"))
        shutil.rmtree(root)
        time.sleep(1.1)  # distinct backup ids
        report = json.loads(report_file.read_text())
        return elapsed, report["peak_rss_mb"], report["seconds"]

    def raw() -> tuple[float, int, float]:
        if recipient:
            seconds = timed(["bash", "-c", f"set -o pipefail; pg_dump --format=custom {age_pipe}> {work / 'raw.dump'}"],
                            env=env)
        else:
            seconds = timed(["pg_dump", "--format=custom", "-f", str(work / "raw.dump")], env=env)
        return seconds, 0, seconds

    def tee_to_s3() -> tuple[float, int, float]:
        key = f"s3://{BUCKET}/admin/{time.monotonic_ns()}.dump"
        pipeline = (f"set -o pipefail; pg_dump --format=custom {same_compression} {age_pipe}| tee {work / 'tee.dump'} | "
                    f"aws --endpoint-url {s3.endpoint} s3 cp - {key}")
        seconds = timed(["bash", "-c", pipeline], env=env)
        return seconds, 0, seconds

    def empty_bucket() -> None:
        client = s3.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=BUCKET, Key=item["Key"])

    results: dict[str, list[tuple[float, int, float]]] = {"raw": [], "local": [], "tee": [], "both": []}
    for round_number in range(1, args.rounds + 1):
        results["raw"].append(raw())
        results["local"].append(ours(None))
        results["tee"].append(tee_to_s3())
        empty_bucket()
        results["both"].append(ours(s3.connection_json()))
        empty_bucket()
        print(f"round {round_number}: " + ", ".join(f"{k} {v[-1][0]:.2f}s" for k, v in results.items()), flush=True)

    dump_mb = (work / "raw.dump").stat().st_size / 1e6
    ours_mb = statistics.median(dump_sizes) / 1e6
    probe = os.urandom(64 << 20)
    started = time.monotonic()
    s3.client().put_object(Bucket=BUCKET, Key="probe", Body=probe)
    ingest = len(probe) / 1e6 / (time.monotonic() - started)

    def median(name: str) -> float:
        return statistics.median(t for t, _, _ in results[name])

    def median_in_process(name: str) -> float:
        return statistics.median(t for _, _, t in results[name])

    def peak(name: str) -> int:
        return max(rss for _, rss, _ in results[name])

    print("peak RSS is the backup process's own (Python), without its pg_dump children")
    print(f"\ndatabase {args.size_mb} MB, dump {dump_mb:.0f} MB, {args.rounds} rounds, medians"
          + (", encrypted with age on both sides" if recipient else ""))
    time_target, size_target = (0.4, 1.2) if compression.zstd_level is None else (0.3, 1.0)
    print(f"(a) raw pg_dump -Fc -f file      {median('raw'):7.2f} s  dump {dump_mb:6.0f} MB")
    print(f"    backup to local, {str(compression):<11} {median('local'):7.2f} s  dump {ours_mb:6.0f} MB  "
          f"peak RSS {peak('local')} MB")
    print(f"    time ratio (target <= {time_target})  {median('local') / median('raw'):7.3f}")
    print(f"    size ratio (target <= {size_target})  {ours_mb / dump_mb:7.3f}")
    print(f"(b) pg_dump {same_compression} | tee | aws s3 cp -")
    print(f"                                 {median('tee'):7.2f} s  {ours_mb / median('tee'):6.1f} MB/s")
    print(f"    backup to local + S3         {median('both'):7.2f} s  {ours_mb / median('both'):6.1f} MB/s  "
          f"peak RSS {peak('both')} MB")
    print(f"    ratio (target <= 0.95)       {median('both') / median('tee'):7.3f}")
    print(f"    in the process, without the interpreter's start-up (a worker has it): {median_in_process('both'):.2f} s, "
          f"ratio {median_in_process('both') / median('tee'):.3f}; to local {median_in_process('local'):.2f} s, "
          f"ratio {median_in_process('local') / median('raw'):.3f}")
    print(f"S3 test server ingest (one 64 MB PUT): {ingest:.1f} MB/s")


if __name__ == "__main__":
    main()
