from __future__ import annotations

import hashlib

import pytest

from bhv360_backup.locations import ArtifactWriter, LocalLocation


class Failing(ArtifactWriter):
    def __init__(self):
        self.aborted = False

    def write(self, chunk):
        raise OSError("No space left on device")

    def commit(self):
        raise AssertionError("never committed")

    def abort(self):
        self.aborted = True


def test_a_failing_writer_drops_out_and_the_others_complete(tmp_path):
    from bhv360_backup.streams import copy_stream

    location = LocalLocation(tmp_path)
    failing = Failing()
    chunks = [bytes([i]) * 1000 for i in range(50)]
    result = copy_stream(chunks, {"local": location.open_writer("database/20260101T000000Z/a"), "s3": failing})
    assert list(result.failed) == ["s3"] and "No space" in str(result.failed["s3"])
    assert failing.aborted
    assert location.read_bytes("database/20260101T000000Z/a") == b"".join(chunks)
    assert result.sha256 == hashlib.sha256(b"".join(chunks)).hexdigest() and result.size == 50_000


def test_a_failing_source_aborts_every_writer(tmp_path):
    from bhv360_backup.streams import copy_stream

    location = LocalLocation(tmp_path)

    def source():
        yield b"abc"
        raise ConnectionError("server closed the connection")

    with pytest.raises(ConnectionError):
        copy_stream(source(), {"local": location.open_writer("database/20260101T000000Z/a")})
    assert list((tmp_path / "database" / "20260101T000000Z").iterdir()) == []


def test_a_single_failing_writer_is_reported_not_raised():
    from bhv360_backup.streams import copy_stream

    failing = Failing()
    result = copy_stream([b"abc", b"def"], {"local": failing})
    assert list(result.failed) == ["local"] and failing.aborted
    assert result.size == 6 and result.sha256 == hashlib.sha256(b"abcdef").hexdigest()
