"""Client-side encryption in the ``age`` format (pyrage), streaming, so ``age -d`` can read every backup.

Backups are encrypted to public keys (recipients, a variable); only a restore needs the private
key (identity, a connection's password). pyrage encrypts between file objects, so each stream
runs it in a thread between the chunk iterator and a bounded queue: memory stays flat.
"""

from __future__ import annotations

import io
import itertools
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence

import pyrage
from pyrage import x25519

from bhv360_backup.errors import ConfigurationError, IntegrityError

AGE = "age"
QUEUE_DEPTH = 4
OUTPUT_CHUNK = 1 << 20  # age writes 64 KiB pieces; hand them on in chunks of about this size
_END = object()


def parse_recipients(text: str, where: str) -> tuple[x25519.Recipient, ...]:
    """``age1…`` public keys separated by commas, spaces or new lines; ``where`` names their origin in errors."""
    recipients = []
    for number, value in enumerate(text.replace(",", " ").split(), start=1):
        try:
            recipients.append(x25519.Recipient.from_str(value))
        except pyrage.RecipientError:
            raise ConfigurationError(f"{where}: recipient {number} is not an age public key (age1…)") from None
    return tuple(recipients)


def parse_identities(text: str, where: str) -> tuple[x25519.Identity, ...]:
    """``AGE-SECRET-KEY-1…`` private keys, one per line (``#`` comments allowed, as in ``age-keygen`` files).

    Errors name the line, never its content.
    """
    identities = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            raise ConfigurationError(f"{where}: line {number} is not an age identity (AGE-SECRET-KEY-1…)") from None
    if not identities:
        raise ConfigurationError(f"{where} holds no age identity")
    return tuple(identities)


def encrypt(chunks: Iterable[bytes], recipients: Sequence[x25519.Recipient]) -> Iterator[bytes]:
    """The age encryption of ``chunks``, streamed. A stream of one chunk (most storage objects) is
    encrypted in place, without the thread a longer stream needs."""
    chunks = iter(chunks)
    first = next(chunks, b"")
    second = next(chunks, None)
    if second is None:
        yield pyrage.encrypt(first, list(recipients))
        return
    yield from _through(lambda source, sink: pyrage.encrypt_io(source, sink, list(recipients)),
                        itertools.chain((first, second), chunks), None)


def decrypt(chunks: Iterable[bytes], identities: Sequence[x25519.Identity], what: str) -> Iterator[bytes]:
    """The plain bytes of the age stream ``chunks``; an :class:`IntegrityError` naming ``what`` if they
    cannot be decrypted (no matching identity, or damaged ciphertext)."""
    return _through(lambda source, sink: pyrage.decrypt_io(source, sink, list(identities)), chunks, what)


class _Cancelled(Exception):
    pass


class _ChunkReader(io.RawIOBase):
    """A readable file over a chunk iterator; remembers the iterator's own error."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            try:
                self._pending = memoryview(next(self._chunks))
            except StopIteration:
                return 0
            except BaseException as error:
                self.error = error
                raise
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class _QueueWriter(io.RawIOBase):
    """A writable file that hands its bytes to a bounded queue in chunks, until the reader side gives up."""

    def __init__(self, out: queue.Queue, stop: threading.Event) -> None:
        self._out = out
        self._stop = stop
        self._pending = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._pending += data
        if len(self._pending) >= OUTPUT_CHUNK:
            self.hand_on()
        return len(data)

    def hand_on(self) -> None:
        if self._pending:
            _put(self._out, bytes(self._pending), self._stop)
            self._pending.clear()


def _put(out: queue.Queue, item: object, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Cancelled
        try:
            out.put(item, timeout=0.2)
            return
        except queue.Full:
            continue


def _through(transform, chunks: Iterable[bytes], decrypting: str | None) -> Iterator[bytes]:
    """Run ``transform(readable, writable)`` in a thread between ``chunks`` and the returned iterator."""
    out: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
    stop = threading.Event()
    reader = _ChunkReader(chunks)

    def run() -> None:
        writer = _QueueWriter(out, stop)
        try:
            transform(reader, writer)
            writer.hand_on()
            outcome: object = _END
        except BaseException as error:  # noqa: BLE001 - handed to the consuming thread
            outcome = error
        try:
            _put(out, outcome, stop)
        except _Cancelled:
            pass

    thread = threading.Thread(target=run, name="age", daemon=True)
    thread.start()
    try:
        while (item := out.get()) is not _END:
            if isinstance(item, BaseException):
                if reader.error is not None:
                    raise reader.error
                if decrypting and isinstance(item, pyrage.DecryptError | OSError | ValueError):
                    raise IntegrityError(f"cannot decrypt {decrypting}: {item}") from None
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
