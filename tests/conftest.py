"""Shared fixtures: real PostgreSQL, S3 (SeaweedFS), SMTP and webhook receivers, Airflow."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyrage import x25519

from tests.fixtures.airflow import configure_airflow_home, migrate

AIRFLOW_HOME = configure_airflow_home()

from bhv360_backup.demo import management_api as management_stand_in  # noqa: E402
from bhv360_backup.demo.servers import postgres_server  # noqa: E402
from bhv360_backup.locations import LocalLocation, S3Location  # noqa: E402
from bhv360_backup.postgres.client import PgTarget  # noqa: E402
from tests.fixtures import postgres  # noqa: E402
from tests.fixtures.canary import (  # noqa: E402
    ArgvLog,
    LeakWatch,
    TaskLogCollector,
    db_rows,
    file_text,
    scan,
    written_files,
)
from tests.fixtures.receivers import SmtpReceiver, WebhookReceiver  # noqa: E402
from tests.fixtures.s3 import ACCESS_KEY, SECRET_KEY, S3Server, ScriptedS3  # noqa: E402
from tests.fixtures.supabase_storage import SERVICE_KEY, StorageServer  # noqa: E402

BUCKET = "bhv360-backups"
DB_PASSWORD = "pg-password-canary-91b7e2"
AGE_IDENTITY = x25519.Identity.generate()
CHILD_ARGV = ArgvLog()
CHILD_ARGV.install()
TASK_LOGS = TaskLogCollector()
TASK_LOGS.install()
RECEIVED: dict[str, list[str]] = {"alert e-mails": [], "alert webhook posts": []}


# Tests that need none of these are the fast tier (`make test-fast`, `pytest -m fast`): the package's
# logic on its own, operators' execute() with fakes, formats, plans and rules; no server, no dag.test().
SERVER_FIXTURES = {"pg_server", "s3_server", "smtp_server", "webhook_server", "storage_api_server", "airflow_db",
                   "api_server", "celery_deployment", "logical_cluster", "logical_db", "management_api",
                   "moto_s3_server"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not SERVER_FIXTURES & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("server"):
            item.add_marker(pytest.mark.fast)


SECRETS = {"database password": DB_PASSWORD, "S3 secret key": SECRET_KEY,
           "Supabase service-role key": SERVICE_KEY, "webhook token": WebhookReceiver.TOKEN,
           "age identity": str(AGE_IDENTITY), "Management API token": management_stand_in.TOKEN,
           **management_stand_in.PROJECT_SECRETS}


def _scanned_folders(config) -> list[Path]:
    folders = [AIRFLOW_HOME]
    if getattr(config, "_tmp_path_factory", None):
        folders.append(config._tmp_path_factory.getbasetemp())
    return folders


@pytest.fixture(autouse=True)
def secret_canary(request):
    """The canary, per test: the test fails if any suite secret reached, while it ran, a file, a log
    record, an XCom or rendered field, an alert, or the argv of any process started at any depth."""
    watch = LeakWatch(CHILD_ARGV, TASK_LOGS, AIRFLOW_HOME / "airflow.db")
    receivers = [request.getfixturevalue(name) for name in ("smtp_server", "webhook_server")
                 if name in request.fixturenames]
    before = {id(item) for receiver in receivers for item in getattr(receiver, "messages", getattr(receiver, "posts", []))}
    yield
    messages = {"alert e-mails": [m.as_string() for r in receivers for m in getattr(r, "messages", [])
                                  if id(m) not in before],
                "alert webhook posts": [str(p["body"]) for r in receivers for p in getattr(r, "posts", [])
                                        if id(p) not in before]}
    leaks = scan(SECRETS, watch.places(_scanned_folders(request.config), messages))
    if leaks:
        pytest.fail("SECRET CANARY: " + "; ".join(sorted(set(leaks))[:20]), pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    """The canary once more over the whole session, for what no single test owned (module fixtures)."""
    places = {str(path): file_text(path) for path in written_files(_scanned_folders(session.config))}
    places.update({f"airflow table {table}": "\n".join(text for _, text in rows)
                   for table, rows in db_rows(AIRFLOW_HOME / "airflow.db").items()})
    places.update({name: "\n".join(texts) for name, texts in RECEIVED.items()})
    places["argv of child processes"] = "\n".join(CHILD_ARGV.since(0))
    places["task logs"] = "\n".join(TASK_LOGS.lines)
    leaks = scan(SECRETS, places)
    if leaks:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            "SECRET CANARY: " + "; ".join(sorted(set(leaks))[:20]), red=True)
        session.exitstatus = 1


@pytest.fixture(scope="session")
def pg_server():
    """The PostgreSQL server; in CI its absence fails the run instead of skipping."""
    try:
        with postgres_server(int(os.environ.get("BHV360_TEST_PGPORT", "5432"))) as server:
            yield server
    except RuntimeError as error:
        if os.environ.get("CI"):
            pytest.fail(f"no PostgreSQL for the tests: {error}")
        pytest.skip(str(error))


@pytest.fixture
def pg_database(pg_server: PgTarget):
    """A throwaway database of its own for each test."""
    target = postgres.create_database(pg_server)
    yield target
    postgres.drop_database(target)


@pytest.fixture(scope="session")
def logical_cluster():
    """A throwaway cluster with wal_level = logical (the shared server runs with replica)."""
    from bhv360_backup.demo.servers import ThrowawayCluster

    cluster = ThrowawayCluster(settings={"wal_level": "logical", "max_replication_slots": "30",
                                         "max_wal_senders": "30"})
    yield cluster.target
    cluster.stop()


@pytest.fixture
def logical_db(logical_cluster):
    """A database of its own on the logical cluster; its replication slots go with it."""
    target = postgres.create_database(logical_cluster, "bhv360_source")
    yield target
    postgres.drop_slots(target)
    postgres.drop_database(target)


@pytest.fixture(scope="session")
def s3_server():
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_s3_server():
    """moto's S3 imitation: only for what SeaweedFS cannot do (each test using it says why)."""
    from bhv360_backup.demo.servers import MotoS3

    server = MotoS3(ACCESS_KEY, SECRET_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server: S3Server):
    """A clean S3 server holding the empty backup bucket."""
    s3_server.reset()
    s3_server.create_bucket(BUCKET)
    return s3_server


@pytest.fixture
def scripted_s3():
    """A server that sends the S3 answers a test scripts (:class:`tests.fixtures.s3.ScriptedS3`)."""
    server = ScriptedS3()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def smtp_server():
    server = SmtpReceiver()
    server.start()
    yield server
    RECEIVED["alert e-mails"] += [message.as_string() for message in server.messages]
    server.stop()


@pytest.fixture(scope="session")
def webhook_server():
    server = WebhookReceiver()
    server.start()
    yield server
    RECEIVED["alert webhook posts"] += [str(post["body"]) for post in server.posts]
    server.stop()


@pytest.fixture(scope="session")
def storage_api_server():
    server = StorageServer().start()
    yield server
    server.stop()


@pytest.fixture
def management_api(monkeypatch):
    """The Management API stand-in with a seeded source project, set as connection ``bhv360_supabase_management``;
    after the test, every request and response must have fitted the published description."""
    stand_in = management_stand_in.ManagementStandIn().start()
    management_stand_in.seed(stand_in, management_stand_in.SOURCE_REF)
    monkeypatch.setenv("AIRFLOW_CONN_BHV360_SUPABASE_MANAGEMENT",
                       stand_in.connection_json(management_stand_in.SOURCE_REF))
    yield stand_in
    stand_in.stop()
    assert stand_in.violations == []


@pytest.fixture
def storage_api(storage_api_server: StorageServer, monkeypatch) -> StorageServer:
    """The local Supabase Storage API, emptied, set as connection ``bhv360_supabase``."""
    import json

    storage_api_server.reset()
    monkeypatch.setenv("AIRFLOW_CONN_BHV360_SUPABASE", json.dumps(
        {"conn_type": "generic", "host": storage_api_server.url, "password": SERVICE_KEY}))
    return storage_api_server


@pytest.fixture(scope="session")
def airflow_db():
    migrate()
    return AIRFLOW_HOME


@dataclass
class BackupEnv:
    root: Path
    log_dir: Path
    db: PgTarget
    s3: S3Server
    smtp: SmtpReceiver
    webhook: WebhookReceiver

    @property
    def local(self) -> LocalLocation:
        return LocalLocation(self.root)

    @property
    def cloud(self) -> S3Location:
        return S3Location(self.s3.client(), BUCKET)

    def job_log(self) -> list[dict]:
        from bhv360_backup import joblog

        return joblog.read(self.log_dir)


def connection_json(target: PgTarget, password: str | None = DB_PASSWORD) -> str:
    import json

    return json.dumps({
        "conn_type": "postgres", "host": target.host, "port": target.port, "login": target.user,
        "password": password, "schema": target.dbname,
    })


@pytest.fixture
def backup_env(tmp_path, monkeypatch, pg_database, s3, smtp_server, webhook_server, airflow_db) -> BackupEnv:
    """Connections and variables of the contract pointing at the real test servers."""
    RECEIVED["alert e-mails"] += [message.as_string() for message in smtp_server.messages]
    RECEIVED["alert webhook posts"] += [str(post["body"]) for post in webhook_server.posts]
    smtp_server.messages.clear()
    webhook_server.posts.clear()
    env = BackupEnv(tmp_path / "backups", tmp_path / "logs", pg_database, s3, smtp_server, webhook_server)
    monkeypatch.setenv("AIRFLOW_CONN_BHV360_DB", connection_json(pg_database))
    monkeypatch.setenv("AIRFLOW_CONN_BHV360_S3", s3.connection_json())
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_server.connection_json())
    monkeypatch.setenv("AIRFLOW_CONN_BHV360_SLACK_OPS", webhook_server.connection_json())
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_BACKUP_ROOT", str(env.root))
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_LOG_DIR", str(env.log_dir))
    monkeypatch.setenv("AIRFLOW_VAR_BHV360_ALERT_EMAILS", "ops@test.bhv360.nl")
    return env


@pytest.fixture
def encrypted(backup_env, monkeypatch) -> x25519.Identity:
    """Encryption on: backups go to the test key's recipient; its identity is connection ``bhv360_age_identity``."""
    import json

    monkeypatch.setenv("AIRFLOW_VAR_BHV360_AGE_RECIPIENTS", str(AGE_IDENTITY.to_public()))
    monkeypatch.setenv("AIRFLOW_CONN_BHV360_AGE_IDENTITY", json.dumps({"conn_type": "generic",
                                                                       "password": str(AGE_IDENTITY)}))
    return AGE_IDENTITY
