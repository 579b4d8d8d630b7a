"""How dumps are compressed, and zstd compression of an artifact in the worker, streaming and on every
core (``zstd -d`` reads it)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import zstandard

from bhv360_backup.errors import ConfigurationError, IntegrityError

ZSTD = "zstd"


@dataclass(frozen=True)
class DumpCompression:
    """How the dump is compressed: ``gzip:N``, pg_dump's own (``-Z N``, 0-9), or ``zstd:N`` (1-19), an
    uncompressed dump compressed in the worker on every core."""

    method: str
    level: int

    @classmethod
    def parse(cls, text: str, where: str) -> DumpCompression:
        found = re.fullmatch(r"(gzip|zstd):(\d{1,2})", text.strip())
        limits = {"gzip": (0, 9), ZSTD: (1, 19)}
        if not found or not limits[found[1]][0] <= int(found[2]) <= limits[found[1]][1]:
            raise ConfigurationError(f"{where}: {text!r} is not gzip:0-9 or zstd:1-19")
        return cls(found[1], int(found[2]))

    def __str__(self) -> str:
        return f"{self.method}:{self.level}"

    @property
    def pg_dump_level(self) -> int:
        return self.level if self.method == "gzip" else 0

    @property
    def zstd_level(self) -> int | None:
        return self.level if self.method == ZSTD else None


DEFAULT_DUMP_COMPRESSION = DumpCompression("gzip", 1)  # the benchmark's pick: see the README


def compress(chunks: Iterable[bytes], level: int) -> Iterator[bytes]:
    """The zstd frame of ``chunks`` at ``level``, compressed by one thread per core."""
    compressor = zstandard.ZstdCompressor(level=level, threads=-1, write_checksum=True).compressobj()
    for chunk in chunks:
        if out := compressor.compress(chunk):
            yield out
    yield compressor.flush()


def decompress(chunks: Iterable[bytes], what: str) -> Iterator[bytes]:
    """The bytes of the zstd stream ``chunks``; an :class:`IntegrityError` naming ``what`` if it is damaged."""
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    try:
        for chunk in chunks:
            if out := decompressor.decompress(chunk):
                yield out
        if not decompressor.eof:
            raise IntegrityError(f"{what}: the zstd stream ends before its frame does")
    except zstandard.ZstdError as error:
        raise IntegrityError(f"{what}: not a valid zstd stream ({error})") from None
