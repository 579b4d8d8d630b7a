"""age encryption: streaming in bounded memory, readable by the standard ``age`` tool, errors that name the problem."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tracemalloc

import pytest
from pyrage import x25519

from bhv360_backup.errors import ConfigurationError, IntegrityError
from bhv360_backup.repository.encryption import decrypt, encrypt, parse_identities, parse_recipients

IDENTITY = x25519.Identity.generate()


def age_cli() -> str:
    """The ``age`` command; ``make test`` installs it, so CI fails rather than skips without it."""
    found = shutil.which("age")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("the age command-line tool is missing: apt-get install age")
        pytest.skip("the age command-line tool is not installed")
    return found


def test_round_trip_streams_in_bounded_memory():
    chunk = os.urandom(1 << 20)
    expected = hashlib.sha256()
    tracemalloc.start()
    try:
        ciphertext = encrypt((chunk for _ in range(64)), [IDENTITY.to_public()])
        plain = hashlib.sha256()
        size = 0
        for piece in decrypt(ciphertext, [IDENTITY], "test"):
            plain.update(piece)
            size += len(piece)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    for _ in range(64):
        expected.update(chunk)
    assert (size, plain.hexdigest()) == (64 << 20, expected.hexdigest())
    assert peak < 16 << 20  # 64 MiB went through; a few queued chunks were in memory at a time


@pytest.mark.parametrize("pieces", [1, 2, 40], ids=["one chunk, in place", "two chunks", "streamed"])
def test_the_age_tool_decrypts_what_we_encrypt(tmp_path, pieces):
    plain = os.urandom(3_000_000)
    size = -(-len(plain) // pieces)
    chunks = [plain[i:i + size] for i in range(0, len(plain), size)]
    (tmp_path / "backup.age").write_bytes(b"".join(encrypt(chunks, [IDENTITY.to_public()])))
    (tmp_path / "key.txt").write_text(f"# created: test\n{IDENTITY}\n")
    result = subprocess.run([age_cli(), "--decrypt", "-i", str(tmp_path / "key.txt"), str(tmp_path / "backup.age")],
                            capture_output=True, check=True)
    assert result.stdout == plain


def test_we_decrypt_what_the_age_tool_encrypts(tmp_path):
    plain = os.urandom(100_000)
    (tmp_path / "plain").write_bytes(plain)
    result = subprocess.run([age_cli(), "-r", str(IDENTITY.to_public()), str(tmp_path / "plain")],
                            capture_output=True, check=True)
    assert b"".join(decrypt([result.stdout], [IDENTITY], "test")) == plain


def test_wrong_key_and_damage_are_integrity_errors_naming_the_copy():
    ciphertext = b"".join(encrypt([b"x" * 200_000], [IDENTITY.to_public()]))
    with pytest.raises(IntegrityError, match="cannot decrypt s3:database/1/database.dump: No matching keys"):
        b"".join(decrypt([ciphertext], [x25519.Identity.generate()], "s3:database/1/database.dump"))
    damaged = bytearray(ciphertext)
    damaged[len(damaged) // 2] ^= 1
    with pytest.raises(IntegrityError, match="cannot decrypt local:"):
        b"".join(decrypt([bytes(damaged)], [IDENTITY], "local:x"))


def test_a_failing_source_fails_the_encryption_with_its_own_error():
    def dump():
        yield b"PGDMP"
        raise RuntimeError("pg_dump exited with 1")

    with pytest.raises(RuntimeError, match="pg_dump exited with 1"):
        list(encrypt(dump(), [IDENTITY.to_public()]))


def test_an_abandoned_stream_stops_its_thread():
    endless = (b"z" * 65536 for _ in iter(int, 1))
    stream = encrypt(endless, [IDENTITY.to_public()])
    next(stream)
    stream.close()  # returns: the worker thread was told to stop and joined


def test_key_parsing_names_the_bad_entry_but_never_echoes_a_secret():
    second = x25519.Identity.generate()
    assert len(parse_recipients(f"{IDENTITY.to_public()}, {second.to_public()}", "v")) == 2
    assert len(parse_identities(f"# old key\n{second}\n\n{IDENTITY}\n", "c")) == 2
    with pytest.raises(ConfigurationError, match="variable bhv360_age_recipients: recipient 2 is not an age public key"):
        parse_recipients(f"{IDENTITY.to_public()} age1nope", "variable bhv360_age_recipients")
    broken = str(IDENTITY)[:-3] + "QQQ"
    with pytest.raises(ConfigurationError, match="line 2 is not an age identity") as raised:
        parse_identities(f"# key\n{broken}", "connection x")
    assert broken not in str(raised.value)
    with pytest.raises(ConfigurationError, match="holds no age identity"):
        parse_identities("# nothing\n", "connection x")
