"""Benchmark: listing a Supabase Storage bucket of many small folders, folder pages side by side
against one after another (the walk as 0.3.0 was first released), in the same run.

The Storage API's v1 list answers one folder level per request, so a bucket laid out as
``org/incident/photo.jpg`` costs one round trip per folder. The test suite's Storage API server
(the real server's response shapes) answers each list request after ``--rtt-ms``, standing in for
the round trip from an Airflow worker to a Supabase region.

    .venv/bin/python benchmarks/bench_supabase_listing.py --folders 1000 --rtt-ms 30
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test suite's Storage API server

from bhv360_backup.sources.storage import LISTING_THREADS, SupabaseStorageSource  # noqa: E402
from tests.fixtures.supabase_storage import SERVICE_KEY, StorageServer  # noqa: E402

BUCKET = "incident-photos"


def listed_in(server: StorageServer, threads: int) -> tuple[float, int]:
    source = SupabaseStorageSource(server.url, SERVICE_KEY, [BUCKET], listing_threads=threads)
    started = time.monotonic()
    count = sum(1 for _ in source.list_objects(BUCKET))
    return time.monotonic() - started, count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folders", type=int, default=1000, help="incident folders, 2 objects and a sub-folder each")
    parser.add_argument("--rtt-ms", type=float, default=30)
    args = parser.parse_args()

    server = StorageServer().start()
    server.create_bucket(BUCKET)
    for i in range(args.folders):
        server.put(BUCKET, f"org-{i % 50}/incident-{i}/photo.jpg", b"jpg", "image/jpeg")
        server.put(BUCKET, f"org-{i % 50}/incident-{i}/notes/report.txt", b"txt", "text/plain")
    server.list_delay_s = args.rtt_ms / 1000
    try:
        one_seconds, one_count = listed_in(server, 1)
        many_seconds, many_count = listed_in(server, LISTING_THREADS)
    finally:
        server.stop()
    if one_count != many_count:
        raise SystemExit(f"the two walks listed {one_count} and {many_count} objects")
    requests = 1 + 50 + 2 * args.folders
    print(f"{many_count} objects in {args.folders} incident folders, {requests} list requests, "
          f"{args.rtt_ms:.0f} ms per request")
    print(f"one folder page at a time (baseline)   {one_seconds:7.2f} s")
    print(f"{LISTING_THREADS} folder pages at a time             {many_seconds:7.2f} s"
          f"  ratio {many_seconds / one_seconds:.3f}")


if __name__ == "__main__":
    main()
