"""Benchmark: a storage snapshot against ``rclone sync`` from the same S3-compatible source.

An S3 server on loopback (SeaweedFS by default, ``--s3 moto`` for moto's imitation) holds N objects of mixed sizes (default 5,000, about 500 MB). In one
run the script times, at the same parallelism:

- ``rclone sync`` of every bucket to a local folder (Debian's ``rclone``; installed if missing),
- a first full snapshot by the package into the local location,
- a second snapshot with nothing changed,
- the minimal pipeline: the snapshot's own source (the same listing and reads), each object's sha256 and
  MD5, a file per object renamed into its content's folder, and nothing else (no index, no blob store,
  no flush): what the first snapshot costs without the package's bookkeeping,

and prints the ratio to rclone, the bytes the second run downloaded, the snapshot process's
peak RSS, and the CPU time the server and the client spent in each phase (a phase whose server time
is close to its wall time, times the server's cores, is bound by the server, whatever the client). With ``--split-cores`` the server runs on the first CPU and every client on the
second, as when the server is another machine: then the client's own CPU work shows in its time. With
``--encrypt`` the snapshots encrypt every blob to a fresh age key and rclone syncs through its
``crypt`` remote: encryption on both sides. Every phase writes into a new ext4 file system made for the
run (``--work-fs here``: under ``benchmarks/.work``; see ``_common.work_folder`` for why).

    sudo .venv/bin/python benchmarks/bench_bucket_sync.py --objects 5000 --parallelism 8 [--encrypt] [--split-cores]
        [--s3 moto] [--work-fs here]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import (
    MachineLoad,
    add_reads_option,
    add_s3_option,
    add_work_fs_option,
    loopback_s3_source,
    parse_or_run_child,
    peak_rss_mb,
    rclone_s3_env,
    require_tool,
    start_s3,
    timed,
    work_folder,
)
from pyrage import x25519

from bhv360_backup.repository.encryption import parse_recipients

BUCKETS = ("certificates", "floor-plans", "incident-photos")


def object_sizes(count: int, rng: random.Random) -> list[int]:
    """Mostly small documents, some photos, a few large scans: about 100 KB on average."""
    sizes = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.70:
            sizes.append(rng.randint(2_000, 60_000))
        elif kind < 0.97:
            sizes.append(rng.randint(100_000, 400_000))
        else:
            sizes.append(rng.randint(1_000_000, 3_000_000))
    return sizes


def cpu_seconds(s3) -> tuple[float, float]:
    """CPU seconds so far of the S3 server and of this process's waited-for children (the clients)."""
    clients = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s3.cpu_seconds(), clients.ru_utime + clients.ru_stime


def since(s3, started: tuple[float, float]) -> tuple[float, float]:
    now = cpu_seconds(s3)
    return now[0] - started[0], now[1] - started[1]


def fill_source(s3, count: int) -> int:
    rng = random.Random(5000)
    client = s3.client()
    for bucket in BUCKETS:
        s3.create_bucket(bucket)
    jobs = [(BUCKETS[i % 3], f"org-{i % 97}/item {i}.bin", size) for i, size in enumerate(object_sizes(count, rng))]

    def put(job: tuple[str, str, int]) -> None:
        bucket, key, size = job
        client.put_object(Bucket=bucket, Key=key, Body=os.urandom(size))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, jobs))
    return sum(size for *_, size in jobs)


def run_minimal_pipeline_child(spec: dict) -> None:
    source = loopback_s3_source(spec["endpoint"], BUCKETS, spec["reads"])
    root = Path(spec["root"])
    root.mkdir(parents=True)

    def copy(obj) -> None:
        sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
        staging = root / f".partial-{os.urandom(8).hex()}"
        with staging.open("wb") as file:
            for chunk in source.open_object(obj).chunks:
                sha256.update(chunk)
                md5.update(chunk)
                file.write(chunk)
        name = sha256.hexdigest()
        (root / name[:2]).mkdir(exist_ok=True)
        staging.replace(root / name[:2] / name)

    with ThreadPoolExecutor(spec["parallelism"]) as pool:
        for bucket in source.list_buckets():
            list(pool.map(copy, source.list_objects(bucket.id)))


def run_snapshot_child(spec: dict) -> None:
    if spec.get("minimal"):
        run_minimal_pipeline_child(spec)
        return
    from bhv360_backup.locations import LocalLocation
    from bhv360_backup.producers.storage import take_snapshot
    from bhv360_backup.repository.layout import BackupType
    from bhv360_backup.repository.writer import BackupWriter
    recipients = parse_recipients(spec["recipient"], "--encrypt") if spec.get("recipient") else ()
    writer = BackupWriter([LocalLocation(Path(spec["root"]))], BackupType.STORAGE, spec["backup_id"], recipients)
    source = loopback_s3_source(spec["endpoint"], BUCKETS, spec["reads"])  # loading boto3's S3 model: start-up
    started = time.monotonic()
    _, stats = take_snapshot(source, writer, dag_id="bench", run_id=spec["backup_id"],
                             parallelism=spec["parallelism"])
    writer.raise_for_failures()
    Path(spec["report"]).write_text(json.dumps({**stats.to_dict(), "seconds": time.monotonic() - started,
                                                "peak_rss_mb": peak_rss_mb()}))


def run_phases(args: argparse.Namespace, rclone: str, s3, work: Path, total: int) -> None:
    """rclone's sync, the first and the second snapshot and the minimal pipeline, each writing into ``work``,
    and their times, ratios and CPU seconds printed."""
    client_cpus = {1} if args.split_cores else None
    env = rclone_s3_env(s3)
    destination = str(work / "rclone") + "/"
    recipient = None
    if args.encrypt:
        recipient = str(x25519.Identity.generate().to_public())
        obscured = subprocess.run([rclone, "obscure", "bench-passphrase"], capture_output=True, text=True,
                                  check=True).stdout.strip()
        env.update(RCLONE_CONFIG_ENC_TYPE="crypt", RCLONE_CONFIG_ENC_REMOTE=destination,
                   RCLONE_CONFIG_ENC_PASSWORD=obscured)
        destination = "enc:"
    rclone_seconds = 0.0
    started = cpu_seconds(s3)
    for bucket in BUCKETS:
        rclone_seconds += timed([rclone, "sync", f"src:{bucket}", destination + bucket,
                                 f"--transfers={args.parallelism}", f"--checkers={args.parallelism}",
                                 "--s3-list-version=2", "-q"], env=env, cpus=client_cpus)

    def snapshot(backup_id: str) -> tuple[float, dict]:
        report = work / f"{backup_id}.json"
        spec = {"endpoint": s3.endpoint, "root": str(work / "ours"), "backup_id": backup_id,
                "parallelism": args.parallelism, "report": str(report), "recipient": recipient,
                "reads": args.reads}
        seconds = timed([sys.executable, __file__, "--child", json.dumps(spec)], cpus=client_cpus)
        return seconds, json.loads(report.read_text())

    cpu = {"rclone": since(s3, started)}
    started = cpu_seconds(s3)
    first_seconds, first = snapshot("20260101T000000Z")
    cpu["first"] = since(s3, started)
    started = cpu_seconds(s3)
    second_seconds, second = snapshot("20260102T000000Z")
    cpu["second"] = since(s3, started)
    started = cpu_seconds(s3)
    minimal_seconds = timed([sys.executable, __file__, "--child", json.dumps({
        "endpoint": s3.endpoint, "root": str(work / "minimal"), "parallelism": args.parallelism,
        "reads": args.reads, "minimal": True})], cpus=client_cpus)
    cpu["minimal"] = since(s3, started)

    print(f"\nparallelism {args.parallelism}, objects read by {args.reads}" + (", encrypted (age / rclone crypt)" if recipient else "")
          + (", server on CPU 0, clients on CPU 1" if args.split_cores else ""))
    print(f"rclone sync (3 buckets)             {rclone_seconds:7.2f} s  {total / 1e6 / rclone_seconds:6.1f} MB/s")
    print(f"first snapshot                      {first_seconds:7.2f} s  {total / 1e6 / first_seconds:6.1f} MB/s"
          f"  downloaded {first['downloaded']}, peak RSS {first['peak_rss_mb']} MB")
    print(f"    ratio to rclone (target <= 0.8) {first_seconds / rclone_seconds:7.3f}")
    print(f"second snapshot, nothing changed    {second_seconds:7.2f} s  downloaded {second['downloaded']} objects,"
          f" {second['bytes_transferred']} bytes, reused {second['reused']}, peak RSS {second['peak_rss_mb']} MB")
    print(f"    share of the first run's time (target <= 0.05) {second_seconds / first_seconds:7.3f}; in the "
          f"process, without its start-up: {second['seconds']:.2f} s of {first['seconds']:.2f} s, "
          f"{second['seconds'] / first['seconds']:.3f}")
    print(f"minimal pipeline (no bookkeeping)    {minimal_seconds:7.2f} s  {total / 1e6 / minimal_seconds:6.1f} MB/s"
          f"  ratio to rclone {minimal_seconds / rclone_seconds:.3f}; the package's own share of the first"
          f" snapshot {1 - minimal_seconds / first_seconds:.0%}")
    print(f"CPU seconds ({args.s3}'s server; moto runs on one GIL: its CPU near the wall time bounds the phase)")
    for phase, wall in (("rclone", rclone_seconds), ("first", first_seconds), ("second", second_seconds),
                        ("minimal", minimal_seconds)):
        server, client = cpu[phase]
        print(f"    {phase:7} wall {wall:6.2f}  server {server:6.2f} ({server / wall:4.0%})  client {client:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--parallelism", type=int, default=8)
    parser.add_argument("--encrypt", action="store_true", help="age-encrypted snapshots against rclone crypt")
    parser.add_argument("--split-cores", action="store_true", help="the server on CPU 0, every client on CPU 1")
    add_s3_option(parser)
    add_reads_option(parser)
    add_work_fs_option(parser)
    args = parse_or_run_child(parser, run_snapshot_child)

    rclone = require_tool("rclone", "rclone")
    machine = MachineLoad()
    s3 = start_s3(args.s3, args.split_cores)
    try:
        total = fill_source(s3, args.objects)
        print(f"source: {args.objects} objects, {total / 1e6:.0f} MB in {len(BUCKETS)} buckets on {s3.endpoint}")
        # rclone's copy, the snapshot's blobs and the minimal pipeline's files, with room to spare
        with work_folder("bench-bucket-sync-", args.work_fs, 4 * total + (1 << 30)) as work:
            run_phases(args, rclone, s3, work, total)
    finally:
        s3.stop()
    print(machine.describe())


if __name__ == "__main__":
    main()
