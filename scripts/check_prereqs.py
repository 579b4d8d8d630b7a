"""Check the system prerequisites before set-up: Python 3.10+, PostgreSQL client tools, and for the
tests a PostgreSQL server (or initdb/pg_ctl to start one). Standard library only: it runs before the
virtualenv exists. Usage: python3 scripts/check_prereqs.py [demo|test]"""

from __future__ import annotations

import glob
import shutil
import socket
import subprocess
import sys


def main(purpose: str) -> int:
    missing = []
    if sys.version_info < (3, 10):  # noqa: UP036 - runs under the system python, before the venv
        missing.append(f"Python 3.10 or newer (this is {sys.version.split()[0]})")
    for tool in ("pg_dump", "pg_dumpall", "pg_restore"):
        if not shutil.which(tool) and not glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"):
            missing.append(f"{tool} (PostgreSQL client tools of the server's major version: apt-get install postgresql-client)")
    server_up = False
    with socket.socket() as sock:
        sock.settimeout(2)
        server_up = sock.connect_ex(("127.0.0.1", 5432)) == 0
    can_start = bool(glob.glob("/usr/lib/postgresql/*/bin/initdb") or shutil.which("initdb"))
    if not server_up and not can_start:
        missing.append("a PostgreSQL server on 127.0.0.1:5432, or initdb/pg_ctl to start a throwaway one "
                       "(apt-get install postgresql)")
    if missing:
        print(f"make {purpose}: missing prerequisites:", *(f"  - {m}" for m in missing), sep="\n", file=sys.stderr)
        return 1
    version = subprocess.run(["pg_dump", "--version"], capture_output=True, text=True).stdout.strip() if shutil.which("pg_dump") else ""
    print(f"prerequisites ok: Python {sys.version.split()[0]}, {version or 'pg_dump'}"
          f", PostgreSQL {'on 127.0.0.1:5432' if server_up else 'throwaway cluster via pg_ctl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "setup"))
