"""The DAG files import cleanly and follow the contract's schedule table."""

from __future__ import annotations

import pytest

from tests.fixtures.airflow import REPO, dag_bag

# The contract's schedule table (Europe/Amsterdam): DAG id -> cron
CONTRACT_SCHEDULES = {
    "bhv360_database_backup": "0 1 * * *",
    "bhv360_config_backup": "0 2 * * *",
    "bhv360_storage_backup": "0 3 * * 0",
    "bhv360_full_backup": "0 4 * * 6",
    "bhv360_restore_drill": "0 9 * * 6",
    "bhv360_backup_health": "0 7 * * *",
    "bhv360_backup_audit": "0 6 1 1,4,7,10 *",
    "bhv360_incremental_backup": "*/5 * * * *",
}


def test_every_contract_dag_exists_and_restore_is_manual():
    assert set(dag_bag().dags) == {*CONTRACT_SCHEDULES, "bhv360_restore"}
    assert type(dag_bag().dags["bhv360_restore"].timetable).__name__ == "NullTimetable"
    assert dag_bag().dags["bhv360_restore"].params.get_param("type").schema["enum"] == ["database", "storage", "config", "full"]


def test_no_import_errors():
    assert dag_bag().import_errors == {}


@pytest.mark.parametrize(("dag_id", "cron"), CONTRACT_SCHEDULES.items())
def test_schedule_follows_the_contract(dag_id, cron):
    dag = dag_bag().dags[dag_id]
    assert dag.timetable.expression == cron
    assert str(getattr(dag.timetable.timezone, "name", dag.timetable.timezone)) == "Europe/Amsterdam"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.dagrun_timeout is not None
    assert dag.doc_md and "bhv360" in dag.tags
    for task in dag.tasks:
        if dag_id.endswith("_backup") and dag_id != "bhv360_incremental_backup":  # the next capture is its retry
            assert task.retries >= 1 and task.retry_exponential_backoff
        assert task.on_failure_callback, f"{dag_id}.{task.task_id} has no failure alert"


def test_readme_schedule_table_matches_the_dags():
    readme = (REPO / "README.md").read_text()
    for dag_id, cron in CONTRACT_SCHEDULES.items():
        row = next(line for line in readme.splitlines() if f"`{dag_id}`" in line and "|" in line)
        minute, hour = cron.split()[:2]
        assert (f"{int(hour):02d}:{int(minute):02d}" if hour.isdigit() else "every 5 minutes") in row, row


@pytest.mark.parametrize(("dag_id", "task_id", "backup_type"), [
    ("bhv360_database_backup", "dump", "database"),
    ("bhv360_storage_backup", "sync", "storage"),
    ("bhv360_config_backup", "snapshot", "config"),
    ("bhv360_full_backup", "full_set", "full"),
])
def test_backup_task_declares_its_asset(dag_id, task_id, backup_type):
    task = dag_bag().dags[dag_id].get_task(task_id)
    assert [asset.uri for asset in task.outlets] == [f"bhv360://backups/{backup_type}"]


def next_run_after(dag, after):
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import DataInterval, TimeRestriction

    timetable = coerce_to_core_timetable(dag.timetable)
    info = timetable.next_dagrun_info(
        last_automated_data_interval=DataInterval(after, after),
        restriction=TimeRestriction(earliest=after, latest=None, catchup=True),
    )
    return info.run_after


def test_local_time_holds_across_dst():
    import pendulum

    dag = dag_bag().dags["bhv360_database_backup"]
    summer = next_run_after(dag, pendulum.datetime(2026, 10, 20, 12, tz="UTC"))
    winter = next_run_after(dag, pendulum.datetime(2026, 10, 30, 12, tz="UTC"))
    assert (summer.hour, winter.hour) == (23, 0)  # 01:00 in Amsterdam is 23:00 UTC in summer, 00:00 in winter


def test_the_queue_setting_pins_every_task_when_the_dags_are_parsed(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW_VAR_BHV360_QUEUE", "backup-host")
    bag = DagBag(dag_folder=str(REPO / "dags"))
    queues = {(dag.dag_id, task.task_id): task.queue for dag in bag.dags.values() for task in dag.tasks}
    assert len(queues) > 20 and set(queues.values()) == {"backup-host"}


@pytest.mark.parametrize("moment", ["", "noon", "2026-11-26T14:05:00"])
def test_the_restore_form_refuses_a_point_in_time_that_is_not_a_moment_with_a_zone(moment):
    from airflow.sdk.definitions.param import ParamValidationError

    params = dag_bag().dags["bhv360_restore"].params
    with pytest.raises(ParamValidationError, match="date-time"):
        params.get_param("point_in_time").resolve(moment)
    assert params.get_param("point_in_time").resolve(None) is None
