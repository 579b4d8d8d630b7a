"""PostgreSQL as a backup source: client tools, versions, a consistent snapshot, streamed dumps."""

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


@dataclass
class DatabaseSnapshot:
    """An exported snapshot held open so ``pg_dump --snapshot`` and the statistics see the same data."""

    snapshot_id: str
    snapshot_time: str
    server_major: int
    server_version: str
    cursor: psycopg.Cursor = field(repr=False)

    def table_stats(self) -> dict[str, dict[str, Any]]:
        """Row counts and small-table checksums in the snapshot; may run while ``pg_dump`` streams."""
        return table_stats(self.cursor)

    def has_storage_objects(self) -> bool:
        """Whether the database has Supabase's ``storage.objects`` table."""
        return self.cursor.execute("SELECT to_regclass('storage.objects')").fetchone()[0] is not None

    def storage_object_names(self) -> Iterator[tuple[str, str]]:
        """``(bucket_id, name)`` of every row of ``storage.objects``, streamed."""
        yield from self.cursor.stream("SELECT bucket_id, name FROM storage.objects ORDER BY 1, 2")


USER_TABLES_SQL = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
  AND n.nspname NOT LIKE 'pg_temp%'
ORDER BY 1, 2
"""


CHECKSUM_MAX_ROWS = 10_000


def table_stats(cursor: psycopg.Cursor) -> dict[str, dict[str, Any]]:
    """Exact row count of every user table, and a content checksum of the small ones, keyed ``schema.table``.

    The checksum is order-independent (md5 over the sorted md5 of each row's text) and is taken
    with ``TimeZone = UTC`` so a restore can compute the same one.
    """
    cursor.execute("SET LOCAL TIME ZONE 'UTC'")
    cursor.execute("SET LOCAL extra_float_digits = 3")
    stats = {}
    for schema, table in cursor.execute(USER_TABLES_SQL).fetchall():
        name = psycopg.sql.SQL("{}.{}").format(psycopg.sql.Identifier(schema), psycopg.sql.Identifier(table))
        rows = cursor.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(name)).fetchone()[0]
        entry: dict[str, Any] = {"rows": rows}
        if rows <= CHECKSUM_MAX_ROWS:
            entry["checksum"] = cursor.execute(
                psycopg.sql.SQL("SELECT coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))), '') "
                                "FROM {} t").format(name)
            ).fetchone()[0]
        stats[f"{schema}.{table}"] = entry
    return stats


@contextlib.contextmanager
def exported_snapshot(target: PgTarget) -> Iterator[DatabaseSnapshot]:
    """Open a repeatable-read transaction and export its snapshot."""
    with target.connect(autocommit=True) as connection:
        with connection.cursor() as cursor:
            cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot_id, snapshot_time, version_num, version = cursor.execute(
                "SELECT pg_export_snapshot(), to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
                " current_setting('server_version_num')::int, current_setting('server_version')"
            ).fetchone()
            snapshot = DatabaseSnapshot(
                snapshot_id=snapshot_id,
                snapshot_time=snapshot_time,
                server_major=version_num // 10000,
                server_version=version,
                cursor=cursor,
            )
            try:
                yield snapshot
            except BaseException:
                # the server may be gone with the dump's error in flight: keep that error, not the rollback's
                with contextlib.suppress(psycopg.Error):
                    cursor.execute("ROLLBACK")
                raise
            cursor.execute("ROLLBACK")


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


def pg_dump_argv(pg_dump: str, snapshot_id: str | None) -> list[str]:
    argv = [pg_dump, "--format=custom", "--no-password"]
    if snapshot_id:
        argv.append(f"--snapshot={snapshot_id}")
    return argv


def pg_dumpall_roles_argv(pg_dumpall: str, dbname: str) -> list[str]:
    return [pg_dumpall, "--roles-only", "--no-role-passwords", "--no-password", f"--database={dbname}"]
