"""``make ui``: the product in a real local Airflow, on the demo's embedded defaults.

Starts the api-server, scheduler and DAG processor (LocalExecutor) on the metadata database
``make demo`` made (its runs stay visible), with the backups it made: the local location as it is,
the S3 stand-in (SeaweedFS) filled with copies of them. The source database is generated anew on a
throwaway PostgreSQL cluster. Prints the URL and the login and runs until Ctrl-C; Airflow's own
records go to ``.demo/ui/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from bhv360_backup.demo import __main__ as demo
from bhv360_backup.demo.servers import free_port
from bhv360_backup.locations import Location
from bhv360_backup.repository.blobs import copy_snapshot_blobs
from bhv360_backup.repository.catalog import list_backups, read_manifest
from bhv360_backup.repository.layout import BackupType
from bhv360_backup.repository.writer import copy_backup

UI_DIR = demo.DEMO_DIR / "ui"
USER = "admin"
PROCESSES = {"api-server": ["api-server"], "scheduler": ["scheduler"], "dag-processor": ["dag-processor"]}
SHARED_BLOBS = {BackupType.STORAGE, BackupType.INCREMENTAL}


def mirror(source: Location, target: Location) -> int:
    """Copy every complete backup of ``source`` that ``target`` lacks (blobs first, manifest last)."""
    copied = 0
    for backup_type in BackupType:
        present = set(list_backups(target, backup_type))
        for backup_id in list_backups(source, backup_type):
            if backup_id in present:
                continue
            manifest = read_manifest(source, backup_type, backup_id)
            if backup_type in SHARED_BLOBS:
                copy_snapshot_blobs(manifest, source, target)
            copy_backup(manifest, source, target)
            copied += 1
    return copied


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def airflow_environment(port: int) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API_AUTH__JWT_SECRET": os.environ.get("AIRFLOW__API_AUTH__JWT_SECRET") or os.urandom(16).hex(),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(UI_DIR / "task-logs"),
    }


def wait_until_up(base: str, processes: dict[str, subprocess.Popen], seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"airflow {name} stopped (exit {process.returncode}): see {UI_DIR / name}.log")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                return
        time.sleep(1)
    raise RuntimeError(f"the api-server did not answer within {seconds:.0f} s: see {UI_DIR / 'api-server.log'}")


def main() -> int:
    repo = Path(__file__).resolve().parents[3]
    demo.configure(repo)
    if not (Path(os.environ["AIRFLOW_VAR_BHV360_LOG_DIR"]) / "jobs.jsonl").exists():
        demo.say("no backups yet: running make demo first")
        if subprocess.run([sys.executable, "-m", "bhv360_backup.demo"]).returncode != 0:
            return 1
    UI_DIR.mkdir(parents=True, exist_ok=True)
    port = int(os.environ.get("BHV360_UI_PORT", "8080"))
    if not port_free(port):
        demo.say(f"port {port} is taken (set BHV360_UI_PORT to choose); using a free one")
        port = free_port()
    with contextlib.ExitStack() as stack:
        demo.say("bhv360-backup in a local Airflow (LocalExecutor), on the demo's defaults:")
        if "AIRFLOW_CONN_BHV360_DB" not in os.environ:
            demo.source_database(stack)
        if "AIRFLOW_VAR_BHV360_STORAGE_SOURCE" not in os.environ and "AIRFLOW_CONN_BHV360_SUPABASE" not in os.environ:
            os.environ["AIRFLOW_VAR_BHV360_STORAGE_SOURCE"] = f"folder:{demo.DEMO_DIR / 'buckets'}"
        if "AIRFLOW_VAR_BHV360_AGE_RECIPIENTS" not in os.environ:
            demo.age_key()
        if "AIRFLOW_CONN_BHV360_S3" not in os.environ:
            demo.s3_stand_in(stack)
            from bhv360_backup.runtime import open_locations
            from bhv360_backup.settings import S3_CONN_ID, Settings

            with demo.airflow_output_to_log():
                local, cloud = open_locations(Settings.load(), S3_CONN_ID)
            demo.say(f"  copied {mirror(local, cloud)} backups of {local.describe()} into {cloud.describe()}")
        env = airflow_environment(port)
        airflow = str(Path(sys.executable).with_name("airflow"))
        # the restore DAG unpaused, to be triggered from its form; the backup DAGs stay as they are (paused
        # unless the user unpaused them), so none starts against the newly generated source unasked
        with open(UI_DIR / "setup.log", "w") as log:
            for args in (["db", "migrate"], ["dags", "reserialize"], ["dags", "unpause", "bhv360_restore"]):
                subprocess.run([airflow, *args], env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
        processes: dict[str, subprocess.Popen] = {}
        for name, args in PROCESSES.items():
            log = stack.enter_context(open(UI_DIR / f"{name}.log", "w"))
            processes[name] = subprocess.Popen([airflow, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True)
        stack.callback(_stop, processes)
        base = env["AIRFLOW__API__BASE_URL"]
        wait_until_up(base, processes)
        password = json.loads((Path(os.environ["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated")
                              .read_text())[USER]
        demo.say(f"Airflow UI: {base}/  login: {USER} / {password}")
        demo.say(f"  the Backups page: {base}/api/backup/dashboard (also in the UI's navigation)")
        demo.say("  restore: trigger bhv360_restore from its form; the backup DAGs run once unpaused")
        demo.say(f"  Airflow's records: {UI_DIR}/")
        demo.say("Ctrl-C stops it")
        stopped: list[int] = []
        for signum in (signal.SIGINT, signal.SIGTERM):  # set explicitly: a background job inherits SIGINT ignored
            signal.signal(signum, lambda signum, _: stopped.append(signum))
        while not stopped:
            for name, process in processes.items():
                if process.poll() is not None:
                    demo.say(f"airflow {name} stopped (exit {process.returncode}): see {UI_DIR / name}.log")
                    return 1
            time.sleep(0.5)
        demo.say("stopping")
    return 0


def _stop(processes: dict[str, subprocess.Popen], seconds: float = 20) -> None:
    """SIGTERM to every Airflow process group, SIGKILL to what is left after ``seconds``."""
    for process in processes.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + seconds
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the group's children (LocalExecutor workers, log server)


if __name__ == "__main__":
    sys.exit(main())
