"""Benchmark: a storage snapshot's memory and time per object as the number of objects grows.

A folder source of N small files (64 bytes each, every one different, in three buckets of nested
folders) is snapshotted into a local location twice, each snapshot in a child process that reports
its peak RSS: a first snapshot (every object a new blob), a second with nothing changed, and a restore
of the first into an empty folder (every blob checked against its sha256, then every restored file). The
baseline, measured in the same run, is ``rclone sync`` of the same folders to a local folder (Debian's
``rclone``; installed if missing) at the same parallelism. With ``--s3`` the source is SeaweedFS's S3
server holding the same objects and the snapshots go into both locations (a local folder and a bucket
of the same server), as in production; rclone then syncs from the S3 source.

Every run writes into a new ext4 file system made for it (``--work-fs here``: under ``benchmarks/.work``).

    sudo .venv/bin/python benchmarks/bench_snapshot_memory.py --objects 10000 50000 200000 [--parallelism 8] [--s3]
        [--no-restore] [--work-fs here]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from _common import (
    MachineLoad,
    add_work_fs_option,
    loopback_s3_client,
    loopback_s3_source,
    parse_or_run_child,
    peak_rss_mb,
    rclone_s3_env,
    require_tool,
    start_s3,
    timed,
    work_folder,
)

from bhv360_backup.repository.catalog import read_manifest

BUCKETS = ("certificates", "floor-plans", "incident-photos")


def fill_folder(root: Path, count: int) -> None:
    for i in range(count):
        folder = root / BUCKETS[i % 3] / f"org-{i % 97}" / f"team-{i % 1009}"
        if i < 3 * 97 * 1009:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"item {i}.txt").write_bytes(f"{i:064d}".encode())


def run_snapshot_child(spec: dict) -> None:
    from bhv360_backup.locations import LocalLocation, S3Location
    from bhv360_backup.producers.storage import take_snapshot
    from bhv360_backup.repository.layout import BackupType
    from bhv360_backup.repository.writer import BackupWriter
    from bhv360_backup.sources.storage import LocalFolderSource

    locations = [LocalLocation(Path(spec["root"]))]
    source = LocalFolderSource(Path(spec["source"]))
    if spec.get("endpoint"):  # an S3 source, and the S3 location beside the local one
        source = loopback_s3_source(spec["endpoint"], BUCKETS)
        locations.append(S3Location(loopback_s3_client(spec["endpoint"]), "bhv360-backups"))
    writer = BackupWriter(locations, BackupType.STORAGE, spec["backup_id"])
    started = time.monotonic()
    _, stats = take_snapshot(source, writer, dag_id="bench", run_id=spec["backup_id"], parallelism=spec["parallelism"])
    writer.raise_for_failures()
    Path(spec["report"]).write_text(json.dumps({**stats.to_dict(), "seconds": time.monotonic() - started,
                                                "peak_rss_mb": peak_rss_mb()}))


def run_restore_child(spec: dict) -> None:
    from bhv360_backup.locations import LocalLocation
    from bhv360_backup.repository.layout import BackupType
    from bhv360_backup.restore.storage import FolderSink, restore_snapshot

    location = LocalLocation(Path(spec["root"]))
    manifest = read_manifest(location, BackupType.STORAGE, spec["backup_id"])
    started = time.monotonic()
    result = restore_snapshot(manifest, [location], FolderSink(Path(spec["target"])), parallelism=spec["parallelism"])
    if result.failed or result.check_problems or result.refused:
        raise SystemExit(f"the restore did not come out whole: {result.to_dict()}")
    Path(spec["report"]).write_text(json.dumps({"restored": result.restored, "seconds": time.monotonic() - started,
                                                "peak_rss_mb": peak_rss_mb()}))


def run_child(spec: dict) -> None:
    (run_restore_child if spec.get("target") else run_snapshot_child)(spec)


def fill_s3(s3, source: Path, rclone: str) -> None:
    """The folder's objects copied into the S3 server's buckets by rclone (a million boto3 puts would take
    the better part of an hour)."""
    for bucket in (*BUCKETS, "bhv360-backups"):
        s3.create_bucket(bucket)
    for bucket in BUCKETS:
        timed([rclone, "copy", str(source / bucket), f"src:{bucket}", "--transfers=16", "--checkers=16", "-q"],
              env=rclone_s3_env(s3))


def measure(count: int, parallelism: int, rclone: str, s3_source: bool, with_restore: bool, work: Path) -> None:
    s3 = start_s3("seaweedfs") if s3_source else None
    try:
        source = work / "source"
        fill_folder(source, count)
        origin, env = str(source), None
        if s3:
            fill_s3(s3, source, rclone)
            origin, env = "src:", rclone_s3_env(s3)
        rclone_seconds = 0.0
        for bucket in BUCKETS if s3 else ("",):
            rclone_seconds += timed([rclone, "sync", origin + bucket if s3 else origin, str(work / "rclone" / bucket),
                                     f"--transfers={parallelism}", f"--checkers={parallelism}", "-q"], env=env)

        def snapshot(backup_id: str) -> dict:
            report = work / f"{backup_id}.json"
            spec = {"source": str(source), "root": str(work / "ours"), "backup_id": backup_id,
                    "parallelism": parallelism, "report": str(report), "endpoint": s3.endpoint if s3 else None}
            timed([sys.executable, __file__, "--child", json.dumps(spec)])
            return json.loads(report.read_text())

        first = snapshot("20260101T000000Z")
        second = snapshot("20260102T000000Z")
        assert first["downloaded"] == count and second["reused"] == count, (first, second)
        line = (f"{count:>9,} objects  rclone sync {rclone_seconds:7.1f} s ({rclone_seconds / count * 1e3:.2f} ms/object)"
                f"  first {first['seconds']:7.1f} s ({first['seconds'] / count * 1e3:.2f} ms/object,"
                f" {first['seconds'] / rclone_seconds:.2f}x rclone, peak RSS {first['peak_rss_mb']} MB)"
                f"  unchanged {second['seconds']:6.1f} s ({second['seconds'] / count * 1e3:.3f} ms/object,"
                f" {second['seconds'] / first['seconds']:.3f} of the first, peak RSS {second['peak_rss_mb']} MB)")
        if with_restore:
            report = work / "restore.json"
            timed([sys.executable, __file__, "--child", json.dumps({
                "root": str(work / "ours"), "backup_id": "20260101T000000Z", "target": str(work / "restored"),
                "parallelism": parallelism, "report": str(report)})])
            restore = json.loads(report.read_text())
            assert restore["restored"] == count, restore
            line += (f"  restore {restore['seconds']:7.1f} s ({restore['seconds'] / count * 1e3:.2f} ms/object,"
                     f" {restore['seconds'] / rclone_seconds:.2f}x rclone, peak RSS {restore['peak_rss_mb']} MB)")
        print(line, flush=True)
    finally:
        if s3:
            s3.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument("--parallelism", type=int, default=8)
    parser.add_argument("--s3", action="store_true", help="an S3 source (SeaweedFS) into both locations")
    parser.add_argument("--no-restore", action="store_true", help="the two snapshots only, no restore")
    add_work_fs_option(parser)
    args = parse_or_run_child(parser, run_child)
    rclone = require_tool("rclone", "rclone")
    machine = MachineLoad()
    what = "S3 source (SeaweedFS) to a local location and S3" if args.s3 else "folder source to a local location"
    print(f"{what}, parallelism {args.parallelism}, {os.cpu_count()} cores; "
          "targets: peak RSS < 200 MB at 1,000,000 objects, unchanged <= 0.05 of the first")
    for count in args.objects:
        # the source, rclone's copy, the snapshot's blobs and the restored files: a block and an inode each
        with work_folder("bench-snapshot-memory-", args.work_fs, count * 4 * 4096 + (1 << 30),
                         inodes=count * 4 + 100_000) as work:
            measure(count, args.parallelism, rclone, args.s3, not args.no_restore, work)
    print(machine.describe())


if __name__ == "__main__":
    main()
