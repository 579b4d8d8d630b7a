"""The Airflow internals the API plugin relies on, in one place so an upgrade touches only this file.

They are not Airflow's public API: authentication of plugin routes (Airflow does not protect a
plugin's FastAPI app) and creating a DAG run from inside the API server.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from airflow.api.common.trigger_dag import trigger_dag
from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import get_user, requires_access_dag
from airflow.exceptions import DagNotFound
from airflow.models.dag import DagModel
from airflow.models.dagrun import DagRun
from airflow.utils.state import DagRunState
from airflow.utils.types import DagRunTriggeredByType

__all__ = ["current_user", "may_trigger", "may_read", "readable_dags", "create_run", "CreatedRun", "DagNotReady",
           "DagPaused"]


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


@dataclass(frozen=True)
class CreatedRun:
    run_id: str
    reused: bool = False  # the idempotency key named a run created before: no second one
    active: list[str] = field(default_factory=list)  # other runs of the DAG queued or running


def readable_dags(user: Any, dag_ids: set[str]) -> set[str]:
    """The DAGs among ``dag_ids`` whose runs ``user`` may read."""
    manager = get_auth_manager()
    return {dag_id for dag_id in dag_ids if manager.is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user)}


def create_run(dag_id: str, conf: dict[str, Any], user_name: str, idempotency_key: str | None = None) -> CreatedRun:
    """Create a manual run of ``dag_id`` with ``conf``, or, for an ``idempotency_key`` the same user sent
    before, return the run it created. Raises :class:`DagNotReady` when the DAG is not in the metadata
    database and :class:`DagPaused` when it is paused."""
    model = DagModel.get_current(dag_id)
    if model is None or model.is_stale:
        raise DagNotReady(dag_id)
    if model.is_paused:
        raise DagPaused(dag_id)
    active = sorted(run.run_id for state in (DagRunState.QUEUED, DagRunState.RUNNING)
                    for run in DagRun.find(dag_id=dag_id, state=state))
    run_id = None
    if idempotency_key:
        run_id = "api__" + hashlib.sha256(f"{user_name}\n{idempotency_key}".encode()).hexdigest()[:32]
        if DagRun.find(dag_id=dag_id, run_id=[run_id]):
            return CreatedRun(run_id, reused=True, active=[other for other in active if other != run_id])
    try:
        run = trigger_dag(dag_id, triggered_by=DagRunTriggeredByType.REST_API, conf=conf, run_id=run_id,
                          triggering_user_name=user_name)
    except DagNotFound:
        raise DagNotReady(dag_id) from None
    if run is None:
        raise DagNotReady(dag_id)
    return CreatedRun(run.run_id, active=active)
