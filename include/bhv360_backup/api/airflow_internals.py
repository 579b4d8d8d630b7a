"""The Airflow internals the API plugin relies on, in one place so an upgrade touches only this file.

They are not Airflow's public API: authentication of plugin routes (Airflow does not protect a
plugin's FastAPI app) and creating a DAG run from inside the API server.
"""

from __future__ import annotations

from typing import Any

from airflow.api.common.trigger_dag import trigger_dag
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import get_user, requires_access_dag
from airflow.exceptions import DagNotFound
from airflow.models.dag import DagModel
from airflow.utils.types import DagRunTriggeredByType

__all__ = ["current_user", "may_trigger", "may_read", "create_run", "DagNotReady", "DagPaused"]


class DagNotReady(LookupError):
    """The API server does not know the DAG yet (not parsed, or its file fails to import)."""


class DagPaused(RuntimeError):
    """The DAG is paused: a run created now would wait until someone unpauses it."""

current_user = get_user


def may_trigger(dag_id: str) -> Any:
    """Dependency: 401 without a valid token, 403 unless the user may create runs of ``dag_id``."""
    return requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id=dag_id)


def may_read(dag_id: str) -> Any:
    """Dependency: 401 without a valid token, 403 unless the user may read runs of ``dag_id``."""
    return requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=dag_id)


def create_run(dag_id: str, conf: dict[str, Any], user_name: str) -> str:
    """Create a manual run of ``dag_id`` with ``conf``; return its run id. Raises :class:`DagNotReady`
    when the DAG is not in the metadata database and :class:`DagPaused` when it is paused."""
    model = DagModel.get_current(dag_id)
    if model is None or model.is_stale:
        raise DagNotReady(dag_id)
    if model.is_paused:
        raise DagPaused(dag_id)
    try:
        run = trigger_dag(dag_id, triggered_by=DagRunTriggeredByType.REST_API, conf=conf,
                          triggering_user_name=user_name)
    except DagNotFound:
        raise DagNotReady(dag_id) from None
    if run is None:
        raise DagNotReady(dag_id)
    return run.run_id
