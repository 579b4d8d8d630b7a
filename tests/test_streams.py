from __future__ import annotations

import hashlib
import threading

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


class Recording(ArtifactWriter):
    def __init__(self):
        self.threads = set()
        self.data = b""
        self.committed = self.aborted = False

    def write(self, chunk):
        self.threads.add(threading.current_thread())
        self.data += chunk

    def commit(self):
        self.committed = True

    def abort(self):
        self.aborted = True


@pytest.mark.parametrize("chunks", [[], [b"one small object"]])
def test_a_stream_of_one_chunk_is_written_to_every_writer_without_a_thread(chunks):
    from bhv360_backup.streams import copy_stream

    writers = {"local": Recording(), "s3": Recording(), "broken": Failing()}
    result = copy_stream(chunks, writers)
    assert list(result.failed) == ["broken"] and writers["broken"].aborted
    for name in ("local", "s3"):
        assert writers[name].committed and writers[name].data == b"".join(chunks)
        assert writers[name].threads <= {threading.current_thread()}


def test_a_longer_stream_feeds_each_writer_from_its_own_thread():
    from bhv360_backup.streams import copy_stream

    writers = {"local": Recording(), "s3": Recording()}
    copy_stream([b"a", b"b", b"c"], writers)
    for writer in writers.values():
        assert writer.data == b"abc" and writer.committed
        assert writer.threads and threading.current_thread() not in writer.threads


@pytest.mark.parametrize("good_chunks", [0, 1, 2])
def test_a_source_failing_early_aborts_every_writer(good_chunks):
    from bhv360_backup.streams import copy_stream

    def source():
        yield from [b"x"] * good_chunks
        raise ConnectionError("server closed the connection")

    writers = {"local": Recording(), "s3": Recording()}
    with pytest.raises(ConnectionError):
        copy_stream(source(), writers)
    assert all(writer.aborted and not writer.committed for writer in writers.values())


def test_a_json_line_is_the_row_with_sorted_keys_and_its_characters_as_they_are():
    """The format every index, blob list and log line has had since 0.1 (written by a reused encoder)."""
    import json
    import random

    from bhv360_backup.streams import json_line

    rng = random.Random(7)
    alphabet = "aZ09 /\"\\\n\t\u00e9\u00df\U0001f600\u2028\x00\x1f"
    for _ in range(300):
        row = {"".join(rng.choices(alphabet, k=rng.randint(1, 6))): rng.choice(
            [None, True, rng.randint(-2**70, 2**70), rng.random() * 1e6, "".join(rng.choices(alphabet, k=12)),
             [1, "é", None], {"z": 1, "a": [2]}]) for _ in range(rng.randint(0, 8))}
        line = json_line(row)
        assert line == json.dumps(row, ensure_ascii=False, sort_keys=True) and json.loads(line) == row
        assert "\n" not in line
    assert json_line({"b": 1, "a": "é"}) == '{"a": "é", "b": 1}'
