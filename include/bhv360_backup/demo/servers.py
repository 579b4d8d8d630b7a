"""Local stand-ins the demo and the tests start: a PostgreSQL cluster and an S3 server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg

from bhv360_backup.postgres.client import PgTarget

S3_REGION = "eu-west-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reachable(target: PgTarget) -> bool:
    try:
        with psycopg.connect(host=target.host, port=target.port, user=target.user, dbname="postgres", connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _pg_bin(tool: str) -> str | None:
    installed = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"), key=lambda p: int(p.parts[-3]))
    return str(installed[-1]) if installed else shutil.which(tool)


class ThrowawayCluster:
    """``initdb`` + ``pg_ctl`` in a temporary folder: trust auth on 127.0.0.1 and a free port."""

    def __init__(self, parent: Path | None = None, settings: dict[str, str] | None = None,
                 superuser: str = "postgres") -> None:
        initdb, self.pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not initdb or not self.pg_ctl:
            raise RuntimeError("no PostgreSQL server on 127.0.0.1:5432 and no initdb/pg_ctl to start one")
        self.folder = Path(tempfile.mkdtemp(prefix="bhv360-pg-", dir=parent))
        self.port = free_port()
        # initdb refuses to run as root: run the server as the postgres user where we are root
        self.run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.run_as:
            shutil.chown(self.folder, "postgres")
        subprocess.run([*self.run_as, initdb, "-D", str(self.folder / "data"), "-U", superuser, "-A", "trust"],
                       check=True, capture_output=True)
        # no pipes: the server started by pg_ctl could keep them open and block the read forever
        result = subprocess.run(
            [*self.run_as, self.pg_ctl, "-D", str(self.folder / "data"), "-l", str(self.folder / "log"), "-w",
             "-o", " ".join([f"-h 127.0.0.1 -p {self.port} -k {self.folder}",
                             *(f"-c {name}={value}" for name, value in (settings or {}).items())]), "start"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            log_file = self.folder / "log"
            raise RuntimeError(f"pg_ctl start failed: {log_file.read_text()[-2000:] if log_file.exists() else ''}")
        self.target = PgTarget(host="127.0.0.1", port=self.port, dbname="postgres", user=superuser)

    def stop(self) -> None:
        subprocess.run([*self.run_as, self.pg_ctl, "-D", str(self.folder / "data"), "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def postgres_server(port: int = 5432, parent: Path | None = None) -> Iterator[PgTarget]:
    """The local server on 127.0.0.1:``port`` if it answers, else a throwaway cluster for the block."""
    local = PgTarget(host="127.0.0.1", port=port, dbname="postgres", user="postgres")
    if reachable(local):
        yield local
        return
    cluster = ThrowawayCluster(parent)
    try:
        yield cluster.target
    finally:
        cluster.stop()


class MotoS3:
    """moto's S3 server on 127.0.0.1: a real HTTP S3 API."""

    def __init__(self, access_key: str = "demo", secret_key: str = "demo-secret") -> None:
        from moto.server import ThreadedMotoServer

        self.access_key, self.secret_key = access_key, secret_key
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def start(self) -> MotoS3:
        import logging

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=S3_REGION,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": S3_REGION})

    def connection_json(self) -> str:
        """An Airflow aws connection (as ``AIRFLOW_CONN_...`` JSON) for this server."""
        return json.dumps({
            "conn_type": "aws", "login": self.access_key, "password": self.secret_key,
            "extra": {"endpoint_url": self.endpoint, "region_name": S3_REGION},
        })
