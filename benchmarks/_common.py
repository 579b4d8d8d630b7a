"""Helpers the benchmarks share."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bhv360_backup.demo.servers import MotoS3, SeaweedS3
from bhv360_backup.postgres.client import libpq_environment

WORK = Path(__file__).parent / ".work"


def peak_rss_mb() -> int:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it does not inherit the parent's before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _cpu_jiffies() -> tuple[int, int]:
    """All CPUs' time so far and the part the hypervisor gave to others (``steal``), from ``/proc/stat``."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:8]), fields[7]


class MachineLoad:
    """What else the machine did while a benchmark ran: runs on a shared VM compare only where this does."""

    def __init__(self) -> None:
        self._started = _cpu_jiffies()

    def describe(self) -> str:
        total, steal = (now - then for now, then in zip(_cpu_jiffies(), self._started, strict=True))
        load = Path("/proc/loadavg").read_text().split()[0]
        return (f"machine: {os.cpu_count()} cores, load average {load} at the end, "
                f"CPU time taken by the hypervisor (steal) {steal / max(total, 1):.1%} over the run")


def parse_or_run_child(parser: argparse.ArgumentParser, run_child: Callable[[dict], None]) -> argparse.Namespace:
    """The benchmark's arguments; with ``--child SPEC`` (how the benchmark runs a measured child process)
    run the child and exit."""
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(json.loads(args.child))
        raise SystemExit(0)
    return args


def timed(argv: list[str], env: dict | None = None, cpus: set[int] | None = None) -> float:
    """Wall seconds of a command; with ``cpus``, the command runs on those CPUs only. The page cache is
    written back first, outside the time: a command that syncs (a snapshot before its index) would
    otherwise also wait for what the one before it left unwritten (``rclone`` never syncs)."""
    pin = None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))
    os.sync()
    started = time.monotonic()
    subprocess.run(argv, env=env, check=True, preexec_fn=pin)
    return time.monotonic() - started


def add_work_fs_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work-fs", choices=("fresh", "here"), default="fresh",
                        help="where every phase writes: a new ext4 file system made for the run (default; needs "
                             "root) or benchmarks/.work")


@contextmanager
def work_folder(prefix: str, kind: str, size_bytes: int, inodes: int | None = None) -> Iterator[Path]:
    """A folder for the run's files, removed after. With ``kind="fresh"`` it is the root of a new ext4 file
    system (with the journal ``mkfs.ext4`` gives it, as on a backup host) in a sparse file, on a loop
    device with direct I/O, unmounted and removed after.

    Why: this machine's root is ext4 without a journal, and there every new file's inode is checked
    against each inode of its block group deleted in the last one to six minutes (``recently_deleted()``,
    skipped where there is a journal). 5,000 files took 0.3 s in a quiet group and 2.4-2.7 s in one
    where files had been deleted minutes before (by an earlier run or its clean-up), so a phase's time
    depended on which group its folder landed in; on a fresh file system the same took 0.18-0.26 s."""
    WORK.mkdir(exist_ok=True)
    if kind == "here":
        folder = Path(tempfile.mkdtemp(prefix=prefix, dir=WORK))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    if os.geteuid() != 0 or not shutil.which("losetup"):
        raise SystemExit("--work-fs fresh needs root and losetup (a loop-mounted file system); "
                         "--work-fs here writes under benchmarks/.work")
    image = WORK / f"{prefix}{uuid.uuid4().hex[:8]}.ext4"
    mountpoint = image.with_suffix(".mnt")
    with image.open("wb") as file:
        file.truncate(size_bytes)
    device = None
    try:
        device = subprocess.run(["losetup", "--find", "--show", "--direct-io=on", str(image)], check=True,
                                capture_output=True, text=True).stdout.strip()
        subprocess.run(["mkfs.ext4", "-q", *(["-N", str(inodes)] if inodes else []), device], check=True)
        mountpoint.mkdir()
        subprocess.run(["mount", device, str(mountpoint)], check=True)
        try:
            yield mountpoint
        finally:
            subprocess.run(["umount", str(mountpoint)], check=True)
    finally:
        if device:
            subprocess.run(["losetup", "--detach", device], check=False)
        image.unlink(missing_ok=True)
        if mountpoint.exists():
            mountpoint.rmdir()


def require_tool(tool: str, debian_package: str) -> str:
    """The tool's path, installing its Debian package first where it is missing (the set-up step)."""
    found = shutil.which(tool)
    if not found:
        print(f"installing {debian_package} ...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", debian_package], check=True, stdout=subprocess.DEVNULL)
        found = shutil.which(tool)
    if not found:
        raise SystemExit(f"{tool} is needed: apt-get install {debian_package}")
    return found


def loopback_s3_client(endpoint: str, access_key: str = "bench", secret_key: str = "bench-secret"):
    """A boto3 client for the benchmark's S3 server on loopback, made as the runtime makes its clients
    (from a session whose listings are read fast)."""
    import boto3

    from bhv360_backup.s3_listing import with_fast_listings

    return with_fast_listings(boto3.Session()).client("s3", endpoint_url=endpoint, region_name="eu-west-1",
                                                      aws_access_key_id=access_key, aws_secret_access_key=secret_key)


def loopback_s3_source(endpoint: str, buckets: Sequence[str], reads: str = "obstore"):
    """The S3 storage source for the benchmark's server: listed by boto3, objects read by obstore as
    ``bhv360_storage_s3_reads`` does by default (``reads="boto3"``: by boto3). Built without Airflow, so
    the child's time is the snapshot's, not Airflow's import."""
    from datetime import datetime, timedelta, timezone

    from bhv360_backup.sources.storage import NativeS3Reader, S3StorageSource

    def credentials() -> dict:
        return {"access_key_id": "bench", "secret_access_key": "bench-secret",
                "expires_at": datetime.now(timezone.utc) + timedelta(minutes=30)}

    native = NativeS3Reader(endpoint=endpoint, region="eu-west-1", path_style=True, credentials=credentials)
    return S3StorageSource(loopback_s3_client(endpoint), list(buckets), native if reads == "obstore" else None)


def rclone_s3_env(s3) -> dict:
    """rclone's environment with the remote ``src:`` for the benchmark's S3 server (without
    ``AWS_CA_BUNDLE``: rclone cannot use a custom CA bundle with a plain-HTTP endpoint, and this one is
    loopback HTTP)."""
    return {**{k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}, "RCLONE_CONFIG_SRC_TYPE": "s3",
            "RCLONE_CONFIG_SRC_PROVIDER": "Other", "RCLONE_CONFIG_SRC_ENDPOINT": s3.endpoint,
            "RCLONE_CONFIG_SRC_ACCESS_KEY_ID": s3.access_key, "RCLONE_CONFIG_SRC_SECRET_ACCESS_KEY": s3.secret_key,
            "RCLONE_CONFIG_SRC_REGION": "eu-west-1"}


def add_reads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reads", choices=("obstore", "boto3"), default="obstore",
                        help="what reads the source's objects (bhv360_storage_s3_reads)")


def start_s3(kind: str, split_cores: bool = False):
    """The benchmark's S3 server: ``seaweedfs`` (default: a real server, its own processes) or ``moto``
    (in this process, on one interpreter lock). With ``split_cores`` the server runs on CPU 0."""
    if kind == "moto":
        if split_cores:
            os.sched_setaffinity(0, {0})  # before moto's threads start: they inherit it
        return MotoS3(access_key="bench", secret_key="bench-secret").start()
    server = SeaweedS3(access_key="bench", secret_key="bench-secret").start()
    if split_cores:
        os.sched_setaffinity(server.pid, {0})
    return server


def add_s3_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--s3", choices=("seaweedfs", "moto"), default="seaweedfs",
                        help="the S3 server: SeaweedFS (default, a real server) or moto's imitation")


def recvlogical_seconds(target, slot: str, end_lsn: str, output: Path, options: Sequence[str] = ()) -> float:
    """Wall seconds of ``pg_recvlogical`` writing ``slot``'s changes up to ``end_lsn`` into ``output`` (the
    capture benchmarks' baseline; ``options``: the output plugin's, as ``name=value``)."""
    plugin_options = [argument for option in options for argument in ("-o", option)]
    with libpq_environment(target) as env:
        started = time.monotonic()
        subprocess.run(["pg_recvlogical", f"--dbname={target.dbname}", f"--slot={slot}", "--start",
                        f"--endpos={end_lsn}", *plugin_options, "-f", str(output), "--no-loop"], env=env, check=True)
        return time.monotonic() - started
