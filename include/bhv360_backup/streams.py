"""Copy one stream to several writers at once, hashing it on the way, in bounded memory."""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import TYPE_CHECKING, Any, ClassVar

from bhv360_backup.locations.base import ArtifactWriter

if TYPE_CHECKING:
    from rich.progress import Progress

log = logging.getLogger(__name__)

QUEUE_DEPTH = 4
PROGRESS_INTERVAL_S = 10.0
_END = object()


class Digest:
    """Running sha256 and byte count of a stream."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


class ProgressLog:
    """Logs bytes and MB/s of a long transfer every ``interval`` seconds, with the share done when the
    total is known; drives a ``rich`` progress bar instead while :attr:`display` is set (a person watches)."""

    display: ClassVar[Progress | None] = None

    def __init__(self, what: str, total: int | None = None, interval: float | None = None) -> None:
        self.what = what
        self.total = total
        self.interval = PROGRESS_INTERVAL_S if interval is None else interval
        self.started = time.monotonic()
        self._next = self.started + self.interval
        self._bar = self.display.add_task(what, total=total) if self.display is not None else None

    def rate(self, size: int) -> float:
        return size / 1e6 / max(time.monotonic() - self.started, 1e-9)

    def __call__(self, size: int) -> None:
        if self._bar is not None and self.display is not None:
            self.display.update(self._bar, completed=size)
            return
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.interval
            if self.total:
                log.info("%s: %3.0f%% %.1f/%.1f MB, %.1f MB/s", self.what, min(size / self.total, 1.0) * 100,
                         size / 1e6, self.total / 1e6, self.rate(size))
            else:
                log.info("%s: %.1f MB so far, %.1f MB/s", self.what, size / 1e6, self.rate(size))


class _WriterThread(threading.Thread):
    """Feeds one writer from a bounded queue; after a failure it keeps draining so others go on."""

    def __init__(self, name: str, writer: ArtifactWriter) -> None:
        super().__init__(name=f"write-{name}", daemon=True)
        self.writer = writer
        self.chunks: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self.error: BaseException | None = None

    def run(self) -> None:
        while (chunk := self.chunks.get()) is not _END:
            if self.error is None:
                try:
                    self.writer.write(chunk)
                except BaseException as error:  # noqa: BLE001 - reported by copy_stream
                    self.error = error


@dataclass
class CopyResult:
    size: int
    sha256: str
    failed: dict[str, BaseException] = field(default_factory=dict)


def copy_stream(
    chunks: Iterable[bytes],
    writers: Mapping[str, ArtifactWriter],
    progress: ProgressLog | None = None,
    digest: Digest | None = None,
) -> CopyResult:
    """Send every chunk to every writer, then commit the writers that kept up.

    A writer that fails is aborted and named in ``failed`` while the others go on. If the
    source itself fails, every writer is aborted and the source's error is raised: nothing
    of a broken stream becomes visible anywhere. ``digest`` (a fresh one by default) counts the
    bytes; it is complete when the writers commit, so a writer may name its object by it.
    """
    digest = digest or Digest()
    chunks = iter(chunks)
    if len(writers) == 1:
        return _copy_inline(chunks, writers, progress, digest)
    try:
        head = list(islice(chunks, 2))
    except BaseException:
        _abort_all(writers)
        raise
    if len(head) < 2:  # a small object: a thread per writer would cost more than writing it here
        return _copy_inline(head, writers, progress, digest)
    chunks = chain(head, chunks)
    threads = {name: _WriterThread(name, writer) for name, writer in writers.items()}
    for thread in threads.values():
        thread.start()
    try:
        for chunk in chunks:
            digest.update(chunk)
            for thread in threads.values():
                if thread.error is None:
                    thread.chunks.put(chunk)
            if progress:
                progress(digest.size)
    except BaseException:
        _finish(threads)
        _abort_all(writers)
        raise
    _finish(threads)
    failed: dict[str, BaseException] = {}
    for name, thread in threads.items():
        try:
            if thread.error is not None:
                raise thread.error
            thread.writer.commit()
        except BaseException as error:  # noqa: BLE001 - the caller decides what a lost location means
            failed[name] = error
            _abort(thread.writer)
    return CopyResult(size=digest.size, sha256=digest.sha256, failed=failed)


def _copy_inline(
    chunks: Iterable[bytes], writers: Mapping[str, ArtifactWriter], progress: ProgressLog | None, digest: Digest
) -> CopyResult:
    """:func:`copy_stream` written inline, each chunk to each writer in turn: for a single writer, or a
    stream of one chunk."""
    failed: dict[str, BaseException] = {}
    try:
        for chunk in chunks:
            digest.update(chunk)
            for name, writer in writers.items():
                if name not in failed:
                    try:
                        writer.write(chunk)
                    except Exception as error:  # noqa: BLE001 - reported in CopyResult.failed
                        failed[name] = error
            if progress:
                progress(digest.size)
    except BaseException:
        _abort_all(writers)
        raise
    for name, writer in writers.items():
        if name not in failed:
            try:
                writer.commit()
            except Exception as error:  # noqa: BLE001 - reported in CopyResult.failed
                failed[name] = error
        if name in failed:
            _abort(writer)
    return CopyResult(size=digest.size, sha256=digest.sha256, failed=failed)


def _abort(writer: ArtifactWriter) -> None:
    """Abort a writer; a writer that cannot abort (its server is gone) is logged, never raised."""
    try:
        writer.abort()
    except Exception as error:  # noqa: BLE001 - leftovers are removed by retention
        log.warning("could not abort a write: %s", error)


def _abort_all(writers: Mapping[str, ArtifactWriter]) -> None:
    for writer in writers.values():
        _abort(writer)


def _finish(threads: Mapping[str, _WriterThread]) -> None:
    for thread in threads.values():
        thread.chunks.put(_END)
    for thread in threads.values():
        thread.join()


_JSON_LINE_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True)  # made once: json.dumps makes one a call


def json_line(row: Any) -> str:
    """A row as a JSON line of an index or log: sorted keys, UTF-8."""
    return _JSON_LINE_ENCODER.encode(row)


def gzip_json_lines(rows: Iterable[Any], level: int = 6) -> Iterator[bytes]:
    """Rows as gzip-compressed JSON lines, produced in chunks."""
    return gzip_lines(map(json_line, rows), level)


def gzip_lines(lines: Iterable[str], level: int = 6) -> Iterator[bytes]:
    """Text lines (each without its newline) gzip-compressed at ``level``, produced in chunks."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    pending: list[bytes] = []
    for line in lines:
        pending.append(line.encode() + b"\n")
        if len(pending) >= 1000:
            if chunk := compressor.compress(b"".join(pending)):
                yield chunk
            pending.clear()
    yield compressor.compress(b"".join(pending)) + compressor.flush()
