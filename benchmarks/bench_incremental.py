"""Benchmark: incremental backups under a steady writer.

On a throwaway PostgreSQL cluster with ``wal_level=logical`` holding a BHV360-like database: a base dump
(the chain's start), then a writer committing ``--rate`` transactions a second (an incident reported,
every fourth one also updating an earlier incident) for ``--minutes``, while a capture runs every
``--interval-s`` seconds as the incremental DAG does (segment written to the local location and
verified, then the slot moved). It prints:

- the recovery point after every capture (the age of the newest captured commit when the capture is
  done) and the worst one over the run (just before a capture finished, the newest captured commit was
  at most this old);
- capture throughput over the whole run's changes (one segment from a slot left behind at the start)
  against ``pg_recvlogical`` writing the same changes from its own slot to a file;
- replay throughput: the segments replayed over the restored dump, against the writer's own SQL applied
  with one ``psql`` session over another restore of the dump; both results compared with the source.

    .venv/bin/python benchmarks/bench_incremental.py --rate 200 --minutes 3 --interval-s 60
"""

from __future__ import annotations

import argparse
import random
import subprocess
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from _common import recvlogical_seconds, work_folder

from bhv360_backup.demo.data import create_demo_database, organisations_for_mb
from bhv360_backup.demo.servers import ThrowawayCluster
from bhv360_backup.locations import LocalLocation
from bhv360_backup.postgres.client import PgTarget, libpq_environment
from bhv360_backup.producers.database import dump_database
from bhv360_backup.producers.incremental import capture_segment
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.manifest import parse_iso
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.restore.pitr import plan_chain, replay
from bhv360_backup.restore.validate import database_stats
from bhv360_backup.sources.changes import ChangeSource

SLOT, BACKLOG_SLOT, RECV_SLOT = "bhv360_backup", "bench_backlog", "bench_recv"
_ids = iter(f"20260101T{n // 3600:02d}{n // 60 % 60:02d}{n % 60:02d}Z" for n in range(86_400))


def quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class Writer(threading.Thread):
    """Commits ``rate`` transactions a second and keeps each one's SQL, for the psql baseline."""

    def __init__(self, target: PgTarget, rate: int, seconds: float, locations: list[str]) -> None:
        super().__init__(daemon=True)
        self.target, self.rate, self.seconds, self.locations = target, rate, seconds, locations
        self.statements: list[str] = []
        self.transactions = 0
        self.behind = 0.0

    def run(self) -> None:
        incidents: list[str] = []
        rng = random.Random(7)
        with self.target.connect(autocommit=True) as connection:
            started = time.monotonic()
            while (elapsed := time.monotonic() - started) < self.seconds:
                due = started + self.transactions / self.rate
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
                incident = str(uuid.UUID(int=rng.getrandbits(128)))
                sql = [f"INSERT INTO incidents (id, location_id, occurred_at, category, severity, description, "
                       f"actions) VALUES ({quoted(incident)}, {quoted(rng.choice(self.locations))}, "
                       f"{quoted(datetime.now(timezone.utc).isoformat())}, 'evacuation', {rng.randint(1, 4)}, "
                       f"{quoted('reported during the benchmark ' + incident)}, '[]')"]
                if incidents and self.transactions % 4 == 3:
                    sql.append(f"UPDATE incidents SET severity = {rng.randint(1, 4)} "
                               f"WHERE id = {quoted(rng.choice(incidents))}")
                incidents.append(incident)
                with connection.transaction():
                    for statement in sql:
                        connection.execute(statement)
                self.statements.append("BEGIN;\n" + ";\n".join(sql) + ";\nCOMMIT;\n")
                self.transactions += 1
            self.behind = self.transactions / self.rate - elapsed


def restored_copy(cluster: ThrowawayCluster, name: str, dump: Path) -> PgTarget:
    with cluster.target.connect(autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    target = cluster.target.with_dbname(name)
    subprocess.run(["pg_restore", "--jobs=2", "-h", target.host, "-p", str(target.port), "-U", target.user,
                    "-d", name, str(dump)], check=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=200, help="transactions a second")
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--interval-s", type=float, default=60, help="seconds between captures")
    parser.add_argument("--size-mb", type=int, default=50, help="the database before the writer starts")
    args = parser.parse_args()

    with work_folder("bench-incremental-", "here", 0) as work:
        measure(args, work)


def measure(args: argparse.Namespace, work: Path) -> None:
    """Captures while a writer runs, the whole run captured once against pg_recvlogical, and the replay
    against psql."""
    cluster = ThrowawayCluster(settings={"wal_level": "logical"})
    try:
        with cluster.target.connect(autocommit=True) as connection:
            connection.execute("CREATE DATABASE bench_source")
        source = cluster.target.with_dbname("bench_source")
        with source.connect(autocommit=True) as connection:
            create_demo_database(connection, organisations_for_mb(args.size_mb))
            locations = [row[0] for row in connection.execute("SELECT id::text FROM locations").fetchall()]
            for slot in (BACKLOG_SLOT, RECV_SLOT):
                connection.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", [slot])
        local = LocalLocation(work / "backups")
        capture = ChangeSource(source, SLOT)
        capture.ensure_slot()
        base = dump_database(source, BackupWriter([local], BackupType.DATABASE, next(_ids)), pg_bin_dir="",
                             dag_id="bench", run_id="bench", slot=SLOT)
        print(f"base dump {base.backup_id}: {base.size / 1e6:.0f} MB; writer: {args.rate} transactions/s for "
              f"{args.minutes:g} min; a capture every {args.interval_s:g} s", flush=True)

        writer = Writer(source, args.rate, args.minutes * 60, locations)
        writer.start()
        points: list[tuple[float, float, int, int]] = []  # (capture seconds, age after, transactions, changes)
        worst = 0.0
        newest: datetime | None = None
        while True:
            deadline = time.monotonic() + args.interval_s
            while writer.is_alive() and time.monotonic() < deadline:
                time.sleep(0.2)
            last_round = not writer.is_alive()
            started = time.monotonic()
            segment = capture_segment(capture, BackupWriter([local], BackupType.INCREMENTAL, next(_ids)),
                                      dag_id="bench", run_id="bench")
            capture.advance(segment.details["end_lsn"])
            done = datetime.now(timezone.utc)
            seconds = time.monotonic() - started
            captured = segment.details.get("last_commit_time")
            if newest is not None:
                worst = max(worst, (done - newest).total_seconds())
            newest = parse_iso(captured) if captured else newest
            age = (done - newest).total_seconds() if newest else float("nan")
            points.append((seconds, age, segment.details.get("transactions", 0), segment.details.get("changes", 0)))
            print(f"  capture {segment.backup_id}: {points[-1][2]} transactions, {points[-1][3]} changes in "
                  f"{seconds:.2f} s; recovery point {age:.1f} s", flush=True)
            if last_round:
                break
        writer.join()

        with source.connect(autocommit=True) as connection:
            end_lsn = connection.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
        backlog = ChangeSource(source, BACKLOG_SLOT)
        started = time.monotonic()
        whole = capture_segment(backlog, BackupWriter([LocalLocation(work / "backlog")], BackupType.INCREMENTAL,
                                                      next(_ids)), dag_id="bench", run_id="bench")
        ours_capture = time.monotonic() - started
        recv_capture = recvlogical_seconds(source, RECV_SLOT, end_lsn, work / "recv.txt")

        dump = local.path_of(f"database/{base.backup_id}/database.dump")
        replayed = restored_copy(cluster, "bench_replay", dump)
        by_name = {"local": local}
        chain = plan_chain(base, by_name, None, accept_earlier=False)
        started = time.monotonic()
        report = replay(replayed, base, chain, by_name)
        ours_replay = time.monotonic() - started
        with_psql = restored_copy(cluster, "bench_psql", dump)
        (work / "writer.sql").write_text("".join(writer.statements))
        with libpq_environment(with_psql) as env:
            started = time.monotonic()
            subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-d", "bench_psql", "-f", str(work / "writer.sql")],
                           env=env, check=True, stdout=subprocess.DEVNULL)
            psql_replay = time.monotonic() - started
        source_stats = database_stats(source)
        equal = database_stats(replayed) == source_stats == database_stats(with_psql)

        transactions, changes = whole.details["transactions"], whole.details["changes"]
        print(f"\nwriter: {writer.transactions} transactions ({writer.transactions / (args.minutes * 60):.0f}/s, "
              f"{max(0.0, -writer.behind):.1f} s behind schedule), {len(points)} captures every {args.interval_s:g} s")
        print(f"recovery point after each capture: median {sorted(p[1] for p in points)[len(points) // 2]:.1f} s, "
              f"max {max(p[1] for p in points):.1f} s; capture time max {max(p[0] for p in points):.2f} s")
        print(f"worst recovery point over the run (just before a capture finished): {worst:.1f} s "
              f"(bound: the {args.interval_s:g} s interval plus one capture's time)")
        print(f"capture of the whole run ({transactions} transactions, {changes} changes, one segment):")
        print(f"  ours (peek, segment written and verified)  {ours_capture:7.2f} s  {changes / ours_capture:8.0f} changes/s")
        print(f"  pg_recvlogical to a file                   {recv_capture:7.2f} s  {changes / recv_capture:8.0f} changes/s")
        print(f"  ratio {ours_capture / recv_capture:.2f}")
        print(f"replay over the restored dump ({report.transactions} transactions, {report.changes} changes):")
        print(f"  ours (checked change by change)            {ours_replay:7.2f} s  "
              f"{report.transactions / ours_replay:8.0f} transactions/s")
        print(f"  the writer's SQL with one psql session     {psql_replay:7.2f} s  "
              f"{writer.transactions / psql_replay:8.0f} transactions/s")
        print(f"  ratio {ours_replay / psql_replay:.2f}; both equal to the source: {equal}")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
