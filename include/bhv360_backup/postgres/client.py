"""PostgreSQL client plumbing that dump sources and restore targets share: where a database is,
a libpq environment with the password in a private passfile, client tools of the right version,
and child processes streamed with errors that say what happened."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bhv360_backup.errors import BackupError, ConfigurationError, first_line
from bhv360_backup.locations.base import CHUNK_SIZE

_VERSION = re.compile(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?")
_LIBPQ_EXTRAS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "options")
_STDERR_TAIL = 4000


@dataclass(frozen=True)
class PgTarget:
    """Where a database is; the password never appears in ``repr`` or a command line."""

    host: str
    port: int
    dbname: str
    user: str
    password: str | None = field(default=None, repr=False)
    extras: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"

    def with_dbname(self, dbname: str) -> PgTarget:
        return PgTarget(self.host, self.port, dbname, self.user, self.password, self.extras)

    def connect(self, **kwargs: Any) -> psycopg.Connection:
        params = {k: v for k, v in self.extras.items() if k in _LIBPQ_EXTRAS}
        params.setdefault("connect_timeout", "10")
        try:
            return psycopg.connect(
                host=self.host,
                port=self.port,
                dbname=self.dbname,
                user=self.user,
                password=self.password or None,
                application_name="bhv360-backup",
                **params,
                **kwargs,
            )
        except psycopg.OperationalError as error:
            raise BackupError(f"cannot connect to PostgreSQL {self.describe()}: {first_line(error)}") from None


@contextlib.contextmanager
def libpq_environment(target: PgTarget) -> Iterator[dict[str, str]]:
    """Environment for a libpq client: the password goes in a private passfile, never argv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(
        PGHOST=target.host,
        PGPORT=str(target.port),
        PGDATABASE=target.dbname,
        PGUSER=target.user,
        PGAPPNAME="bhv360-backup",
        PGCONNECT_TIMEOUT=target.extras.get("connect_timeout", "10"),
    )
    for key in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
        if key in target.extras:
            env[f"PG{key.upper()}"] = target.extras[key]
    with tempfile.TemporaryDirectory(prefix="bhv360-pg-") as private:
        if target.password:
            passfile = Path(private) / "pgpass"
            escaped = target.password.replace("\\", "\\\\").replace(":", "\\:")
            fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(f"*:*:*:*:{escaped}\n")
            env["PGPASSFILE"] = str(passfile)
        yield env


def tool_major(binary: str) -> tuple[int, str]:
    """Major version and version text of a PostgreSQL client tool."""
    output = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    match = _VERSION.search(output)
    if not match:
        raise ConfigurationError(f"cannot read the version of {binary}: {output.strip()!r}")
    return int(match.group(1)), output.strip().split(") ", 1)[-1]


def find_client(tool: str, server_major: int, bin_dir: str = "") -> str:
    """The client tool to use for a server: the configured folder, Debian's per-version folder, or PATH.

    Raises :class:`ConfigurationError` naming the client that is needed when only an older one exists.
    """
    candidates = [Path(bin_dir) / tool] if bin_dir else []
    candidates += [Path(f"/usr/lib/postgresql/{server_major}/bin/{tool}")]
    on_path = shutil.which(tool)
    if on_path:
        candidates.append(Path(on_path))
    found = []
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            major, text = tool_major(str(candidate))
            if major >= server_major:
                return str(candidate)
            found.append(f"{candidate} ({text})")
    seen = "; found only " + ", ".join(found) if found else f"; no {tool} found"
    raise ConfigurationError(
        f"{tool} {server_major} or newer is needed for a PostgreSQL {server_major} server{seen}: "
        f"install postgresql-client-{server_major}, or set the variable bhv360_pg_dump_bin_dir"
    )


def server_major(target: PgTarget) -> int:
    with target.connect() as connection:
        return int(connection.execute("SHOW server_version_num").fetchone()[0]) // 10000


class ChildProcessStream:
    """Iterate a child's stdout in chunks; on a clean end, raise unless the child exited 0.

    stderr is collected in a thread (so a chatty child cannot block) and its tail goes into
    the error message. Closing the iterator early kills the child.
    """

    def __init__(self, argv: list[str], env: dict[str, str], what: str) -> None:
        self.argv = argv
        self.what = what
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self._stderr = bytearray()
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self._stderr += line
            del self._stderr[:-_STDERR_TAIL]

    def __iter__(self) -> Iterator[bytes]:
        try:
            while chunk := self.process.stdout.read(CHUNK_SIZE):
                yield chunk
            code = self.process.wait()
            self._stderr_reader.join()
            if code != 0:
                raise BackupError(exit_message(self.what, code, self._stderr.decode(errors="replace").strip()))
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.process.stdout.close()


def exit_message(what: str, code: int, stderr: str) -> str:
    """Why a child failed: the signal that killed it (a negative ``code``), or its exit code, then its stderr."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "an unknown signal"
        cause = f"{what} was killed by signal {name} ({-code})"
        return f"{cause}: {stderr}" if stderr else f"{cause}; it was stopped from outside (out of memory, or a person)"
    return f"{what} failed (exit {code}): {stderr or 'no message on stderr'}"
