"""The package's own threads: a pool that takes work only as fast as it gets through it, so a million
objects are never a million queued tasks, and an action repeated by a thread while a block runs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

TASKS_AHEAD = 4  # tasks queued or running per worker thread: enough to keep every worker busy


class BoundedPool:
    """A thread pool whose ``submit`` waits while ``TASKS_AHEAD`` tasks per worker are queued or running.
    Nothing collects results: a task handles its own failure."""

    def __init__(self, workers: int, name: str) -> None:
        workers = max(1, workers)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._slots = threading.BoundedSemaphore(workers * TASKS_AHEAD)

    def submit(self, task: Callable[..., None], *args: object) -> None:
        self._slots.acquire()
        self._pool.submit(task, *args).add_done_callback(lambda _: self._slots.release())

    def __enter__(self) -> BoundedPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.shutdown(wait=True)


@contextmanager
def repeated(action: Callable[[], None], every_seconds: float, name: str) -> Iterator[None]:
    """``action`` run every ``every_seconds`` (the first after one interval) by a thread of its own while
    the block runs; leaving the block waits for a run in progress. ``action`` handles its own failures."""
    stopped = threading.Event()

    def run() -> None:
        while not stopped.wait(every_seconds):
            action()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopped.set()
        thread.join()
