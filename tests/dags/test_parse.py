"""Parsing the DAG files touches no Variable, no Connection, no database and no network (astro-style):
the DAG processor parses them every few seconds, and a parse must never wait on, or leak to, anything."""

from __future__ import annotations

import socket
import subprocess

import psycopg
import pytest

from tests.fixtures.airflow import REPO


@pytest.fixture
def guarded(monkeypatch):
    """Every way a DAG file could reach out, made to fail loudly and be recorded."""
    from airflow.models.variable import Variable as ModelVariable
    from airflow.sdk import BaseHook, Variable

    touched: list[str] = []

    def refuse(what):
        def guard(*args, **kwargs):
            touched.append(what)
            raise RuntimeError(f"{what} at DAG parse time")
        return guard

    for owner, name, what in ((Variable, "get", "Variable.get"), (ModelVariable, "get", "Variable.get"),
                              (BaseHook, "get_connection", "a Connection"), (socket.socket, "connect", "the network"),
                              (socket, "create_connection", "the network"), (psycopg, "connect", "a database"),
                              (subprocess.Popen, "__init__", "a child process")):
        monkeypatch.setattr(owner, name, refuse(what))
    return touched


def parse(folder):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(folder))


def test_the_dag_files_touch_nothing_when_parsed(guarded):
    bag = parse(REPO / "dags")
    assert bag.import_errors == {}
    assert guarded == []
    assert len(bag.dags) >= 8


def test_the_guard_catches_a_dag_file_that_reads_a_variable(guarded, tmp_path):
    (tmp_path / "bad_dag.py").write_text(
        "from airflow.sdk import DAG, Variable\n"
        "root = Variable.get('bhv360_backup_root')\n"
        "with DAG('bad', schedule=None):\n    pass\n")
    bag = parse(tmp_path)
    assert guarded == ["Variable.get"] and "Variable.get at DAG parse time" in str(bag.import_errors)
