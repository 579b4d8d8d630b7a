"""The local location: a folder on the backup host (files 0600, folders 0700)."""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from bhv360_backup.errors import BackupError
from bhv360_backup.locations.base import (
    CHUNK_SIZE,
    STAGING_PREFIX,
    ArtifactMissing,
    ArtifactWriter,
    Location,
    StoredObject,
)
from bhv360_backup.paths import check_relative_path


def _make_dirs(path: Path) -> None:
    if path.is_dir():
        return
    for parent in reversed([path, *path.parents]):
        if not parent.exists():
            parent.mkdir(mode=0o700, exist_ok=True)  # another writer thread may create it first


def _files(folder: str, key_prefix: str) -> Iterator[tuple[str, os.stat_result]]:
    """The regular files below ``folder`` (no symlinks, not followed into linked folders) by key
    (``key_prefix`` + their path below it), skipping any renamed or removed since listed (a staging file
    another run committed meanwhile). Walked folder by folder with ``os.scandir``, keys built as text:
    ``Path.rglob`` remembers every path it yielded (a million blobs' worth of memory), and a ``Path``
    per file was most of a no-change snapshot's listing of its blobs."""
    pending = [(folder, key_prefix)]
    while pending:
        parent, prefix = pending.pop()
        try:
            entries = list(os.scandir(parent))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append((entry.path, f"{prefix}{entry.name}/"))
                    continue
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode):
                yield f"{prefix}{entry.name}", info


WRITE_BACK_EVERY = 64 << 20  # a durable file's bytes handed to the disk as they come, in steps of this
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writing the range back, without waiting for it


def _libc_function(name: str, argument_types: list[type]) -> Callable[..., int] | None:
    """A function of the C library that ``os`` does not offer, or None where the C library has none."""
    try:
        function = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argument_types
    return function


# Linux's sync_file_range: it leaves the pages cached (posix_fadvise(DONTNEED) also starts the write-back
# but drops what is already written, and reading the dump back for its check then took twice as long)
_start_write_back = _libc_function("sync_file_range", [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint])
# Linux's syncfs: one file system, and unlike sync(2) it reports a write-back error (since Linux 5.8)
_sync_file_system = _libc_function("syncfs", [ctypes.c_int])


class LocalWriter(ArtifactWriter):
    """Writes to a hidden staging file beside the target and renames it on commit.

    With ``final``, the target is decided on commit: ``final()`` names it (None: discard the bytes),
    and ``target`` only says where the staging file goes. A durable file is synced on commit, and its
    write-back is started every ``WRITE_BACK_EVERY`` bytes on the way, so the sync waits for the last
    step only, not for a whole dump the kernel kept in memory.
    """

    def __init__(
        self, target: Path, *, durable: bool = True, final: Callable[[], Path | None] | None = None
    ) -> None:
        _make_dirs(target.parent)
        self._target = target
        self._final = final
        self._durable = durable
        self._staging = target.with_name(f"{STAGING_PREFIX}{uuid.uuid4().hex}-{target.name}")
        self._fd: int | None = os.open(self._staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._written = 0
        self._handed_over = 0  # bytes whose write-back has been started

    def write(self, chunk: bytes) -> None:
        if self._fd is None:
            raise BackupError(f"write to {self._target} after commit or abort")
        view = memoryview(chunk)
        while view:
            view = view[os.write(self._fd, view) :]
        self._written += len(chunk)
        if self._durable and self._written - self._handed_over >= WRITE_BACK_EVERY and _start_write_back is not None:
            # advisory: where it fails, the sync on commit writes the range
            _start_write_back(self._fd, self._handed_over, self._written - self._handed_over, _SYNC_FILE_RANGE_WRITE)
            self._handed_over = self._written

    def commit(self) -> None:
        if self._fd is None:
            raise BackupError(f"commit of {self._target} after abort")
        if self._durable:
            os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        if self._final is not None:
            target = self._final()
            if target is None:
                self._staging.unlink(missing_ok=True)
                return
            _make_dirs(target.parent)
            self._target = target
        os.replace(self._staging, self._target)
        if self._durable:
            directory = os.open(self._target.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._staging.unlink(missing_ok=True)


class LocalLocation(Location):
    """Objects as files under ``root``, a key's folders as folders."""

    name = "local"
    cheap_size_lookups = True

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._real_root: Path | None = None
        self._inside: set[str] = set()  # folders (keys) found inside the root: a blob's path checks one lstat

    def describe(self) -> str:
        return str(self.root)

    def path_of(self, key: str) -> Path:
        """The file a key names, refusing keys that leave the root (``..``, symlinks out)."""
        path = self.root / check_relative_path(key)
        folder = key.rpartition("/")[0]
        if folder in self._inside and not path.is_symlink():
            return path
        if self._real_root is None:
            self._real_root = self.root.resolve()
        if not path.resolve().is_relative_to(self._real_root):
            raise BackupError(f"{key!r} leads outside the local backup root {self.root}")
        if path.parent.is_dir() and len(self._inside) < 4096:
            self._inside.add(folder)
        return path

    def local_path(self, key: str) -> Path | None:
        return self.path_of(key)

    def open_writer(self, key: str, *, durable: bool = True) -> ArtifactWriter:
        return LocalWriter(self.path_of(key), durable=durable)

    def open_blob_writer(self, folder: str, key_of: Callable[[], str | None]) -> ArtifactWriter:
        def final() -> Path | None:
            key = key_of()
            return None if key is None else self.path_of(key)

        # not fsynced one by one: a snapshot flushes once before the index that names its blobs
        return LocalWriter(self.path_of(f"{folder.rstrip('/')}/blob"), durable=False, final=final)

    def flush(self) -> None:
        """The file systems of the root and of its folders synced (``syncfs``): a write-back that failed
        since the blobs were written raises, where ``sync`` reported nothing (the kernel keeps the error
        for the first who asks, so one written back before the flush is reported too)."""
        if not self.root.is_dir():
            return  # nothing was written here
        if _sync_file_system is None:
            os.sync()
            return
        folders = {os.stat(self.root).st_dev: str(self.root)}
        with os.scandir(self.root) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.setdefault(entry.stat(follow_symlinks=False).st_dev, entry.path)
        for folder in folders.values():
            descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                if _sync_file_system(descriptor) != 0:
                    raise BackupError(f"writing {folder} to disk failed: {os.strerror(ctypes.get_errno())}")
            finally:
                os.close(descriptor)

    def read_chunks(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        path = self.path_of(key)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise ArtifactMissing(f"local: {key} is missing under {self.root}") from None
        with handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    def size_of(self, key: str) -> int | None:
        return self.sizes_of([key]).get(key)

    def sizes_of(self, keys: Iterable[str]) -> dict[str, int]:
        """Regular files' sizes (not a symlink's target: as :meth:`iter_objects`, which lists neither),
        one ``lstat`` a file once its folder is known to be inside the root."""
        root = str(self.root)
        found = {}
        for key in keys:
            if check_relative_path(key).rpartition("/")[0] not in self._inside:
                self.path_of(key)
            try:
                info = os.lstat(f"{root}/{key}")
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISREG(info.st_mode):
                found[key] = info.st_size
        return found

    def iter_objects(self, prefix: str) -> Iterator[StoredObject]:
        folder_key = prefix.rstrip("/")
        folder = self.path_of(folder_key)
        if not folder.is_dir():
            return
        for key, info in _files(str(folder), f"{folder_key}/"):
            yield StoredObject(key, info.st_size, datetime.fromtimestamp(info.st_mtime, timezone.utc))

    def delete(self, key: str) -> None:
        self.path_of(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        folder = self.path_of(prefix.rstrip("/"))
        if folder.is_dir():
            shutil.rmtree(folder)
