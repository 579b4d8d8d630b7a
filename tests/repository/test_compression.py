"""The dump's compression: the setting, zstd in the worker, and reading a compressed artifact back."""

from __future__ import annotations

import hashlib
import os

import pytest

from bhv360_backup.errors import ConfigurationError, IntegrityError
from bhv360_backup.locations import LocalLocation
from bhv360_backup.repository.compression import DumpCompression, compress, decompress
from bhv360_backup.repository.database import dump_artifact, dump_path
from bhv360_backup.repository.layout import BackupType, artifact_key
from bhv360_backup.repository.manifest import Manifest
from bhv360_backup.repository.verify import plain_chunks, verify_backup
from bhv360_backup.repository.writer import BackupWriter


@pytest.mark.parametrize(("text", "pg_dump_level", "zstd_level", "path"), [
    ("gzip:1", 1, None, "database.dump"), ("gzip:0", 0, None, "database.dump"), (" zstd:3 ", 0, 3, "database.dump.zst"),
    ("zstd:19", 0, 19, "database.dump.zst"),
])
def test_the_setting(text, pg_dump_level, zstd_level, path):
    compression = DumpCompression.parse(text, "variable bhv360_dump_compression")
    assert (compression.pg_dump_level, compression.zstd_level, dump_path(compression)) == (pg_dump_level, zstd_level, path)
    assert DumpCompression.parse(str(compression), "x") == compression


@pytest.mark.parametrize("text", ["gzip", "gzip:10", "zstd:0", "zstd:20", "lz4:1", "", "gzip:-1"])
def test_a_wrong_setting_is_named(text):
    with pytest.raises(ConfigurationError, match=f"variable bhv360_dump_compression: {text!r} is not gzip:0-9"):
        DumpCompression.parse(text, "variable bhv360_dump_compression")


def test_zstd_streams_round_trip_and_damage_is_named():
    chunks = [os.urandom(50_000) + bytes(500_000) for _ in range(8)]
    stored = list(compress(chunks, 3))
    assert sum(map(len, stored)) < sum(map(len, chunks)) / 5
    assert b"".join(decompress(stored, "x")) == b"".join(chunks)
    whole = b"".join(stored)
    with pytest.raises(IntegrityError, match="copy: the zstd stream ends before its frame does"):
        list(decompress([whole[:-20]], "copy"))
    with pytest.raises(IntegrityError, match="copy: not a valid zstd stream"):
        list(decompress([b"PGDMP" + whole], "copy"))


def test_a_compressed_artifact_records_its_plain_bytes_and_reads_back_plain(tmp_path):
    location = LocalLocation(tmp_path)
    plain = b"PGDMP" + bytes(3_000_000)
    writer = BackupWriter([location], BackupType.DATABASE, "20261126T010000Z")
    artifact = writer.add("database.dump.zst", [plain[:1_000_000], plain[1_000_000:]], zstd_level=3)
    writer.verify()
    manifest = writer.publish(dag_id="d", run_id="r", details={})

    again = Manifest.from_bytes(manifest.to_bytes(), "test").artifact("database.dump.zst")
    assert again == artifact and again.compression == "zstd" and again.encryption is None
    assert (again.plain_size, again.plain_sha256) == (len(plain), hashlib.sha256(plain).hexdigest())
    assert again.size < len(plain) / 100
    assert dump_artifact(manifest) == "database.dump.zst"
    key = artifact_key(BackupType.DATABASE, "20261126T010000Z", "database.dump.zst")
    assert b"".join(plain_chunks(location, key, again)) == plain
    assert verify_backup(location, manifest, deep=True) == []


def test_an_unknown_compression_in_a_manifest_is_refused(tmp_path):
    writer = BackupWriter([LocalLocation(tmp_path)], BackupType.DATABASE, "20261126T010000Z")
    writer.add("database.dump.zst", [b"x" * 1000], zstd_level=1)
    text = writer.publish(dag_id="d", run_id="r", details={}).to_bytes().replace(b'"zstd"', b'"brotli"')
    with pytest.raises(IntegrityError, match="unknown compression 'brotli'"):
        Manifest.from_bytes(text, "test")
