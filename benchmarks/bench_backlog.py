"""Benchmark: a backlog after an outage, captured in pieces in bounded memory.

On a throwaway PostgreSQL cluster with ``wal_level=logical``: a slot is created, then ``--changes`` rows
are inserted in transactions of 1,000 (2,000,000 by default) while nothing captures. Then the
incremental capture runs as the DAG would, piece after piece (each a verified segment, the slot moved
after it) until no backlog remains; beside it, ``pg_recvlogical`` writes the same changes from its own
slot to a file. It prints the pieces, the time of both, their ratio, and the capture's peak RSS
(this process: the stream is read in batches, so it should not grow with the backlog).

    .venv/bin/python benchmarks/bench_backlog.py --changes 2000000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import peak_rss_mb, recvlogical_seconds, work_folder

from bhv360_backup.demo.servers import ThrowawayCluster
from bhv360_backup.locations import LocalLocation
from bhv360_backup.producers.incremental import capture_segment
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.writer import BackupWriter
from bhv360_backup.sources.changes import ChangeSource

SLOT, RECV_SLOT = "bhv360_backup", "bench_recv"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=2_000_000)
    args = parser.parse_args()
    with work_folder("bench-backlog-", "here", 0) as work:
        capture_against_recvlogical(args, work)


def capture_against_recvlogical(args: argparse.Namespace, work: Path) -> None:
    """The backlog written, captured in pieces, and pg_recvlogical's time for the same."""
    cluster = ThrowawayCluster(settings={"wal_level": "logical", "max_replication_slots": "10",
                                         "max_wal_size": "4GB"})
    try:
        target = cluster.target
        with target.connect(autocommit=True) as connection:
            connection.execute("CREATE TABLE beats (n bigint PRIMARY KEY, note text)")
        source = ChangeSource(target, SLOT)
        source.ensure_slot()
        with target.connect(autocommit=True) as connection:
            connection.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", [RECV_SLOT])
            started = time.monotonic()
            for batch in range(args.changes // 1000):
                connection.execute("INSERT INTO beats SELECT g, 'a note of some length' FROM generate_series(%s::bigint, %s::bigint) g",
                                   [batch * 1000 + 1, batch * 1000 + 1000])
            print(f"backlog: {args.changes:,} changes in {args.changes // 1000:,} transactions "
                  f"({time.monotonic() - started:.1f} s to write)")
            end = connection.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()[0]

        location = LocalLocation(work / "backups")
        started, pieces, changes = time.monotonic(), 0, 0
        while True:
            writer = BackupWriter([location], BackupType.INCREMENTAL, f"20260101T{pieces // 60:04d}{pieces % 60:02d}Z")
            manifest = capture_segment(source, writer, dag_id="bench", run_id=writer.backup_id)
            source.advance(manifest.details["end_lsn"])
            pieces, changes = pieces + 1, changes + manifest.details["changes"]
            print(f"  piece {pieces}: {manifest.details['changes']:,} changes, up to {manifest.details['end_lsn']}"
                  f"{' (backlog remains)' if manifest.details.get('backlog') else ''}")
            if not manifest.details.get("backlog"):
                break
        ours = time.monotonic() - started

        baseline = recvlogical_seconds(target, RECV_SLOT, end, work / "recvlogical.out",
                                       ["include-xids=1", "include-timestamp=1", "skip-empty-xacts=1"])
        print(f"\ncapture in {pieces} piece(s): {changes:,} changes in {ours:.1f} s, peak RSS {peak_rss_mb()} MB")
        print(f"pg_recvlogical to a file:      {baseline:.1f} s")
        print(f"    ratio (target <= 1.5)      {ours / baseline:.2f}")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
