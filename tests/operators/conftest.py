"""Fixtures the operator tests share: a restore target database and a finished database backup."""

from __future__ import annotations

import psycopg
import pytest

from bhv360_backup.demo.data import create_demo_database
from bhv360_backup.repository.catalog import list_backups
from bhv360_backup.repository.layout import BackupType
from tests.conftest import connection_json
from tests.fixtures import postgres
from tests.fixtures.airflow import run_dag


@pytest.fixture
def restore_db(backup_env, monkeypatch):
    target = postgres.create_database(backup_env.db.with_dbname("postgres"), "bhv360_restore")
    monkeypatch.setenv("AIRFLOW_CONN_BHV360_RESTORE_DB", connection_json(target))
    yield target
    postgres.drop_database(target)


@pytest.fixture
def database_backup(backup_env):
    with psycopg.connect(host=backup_env.db.host, port=backup_env.db.port, user="postgres",
                         dbname=backup_env.db.dbname, autocommit=True) as connection:
        create_demo_database(connection, 2)
    run_dag("bhv360_database_backup")
    (backup_id,) = list_backups(backup_env.local, BackupType.DATABASE)
    return backup_id
