"""DAG runs in this process with ``dag.test()`` (the demo's and the tests'), each with the DAG's own params.

``dag.test()`` runs tasks in-process, and Airflow resolves a run's conf into the very ``Param`` objects the
DAG holds, so without this one run's conf (a ``point_in_time``, say) stays in the params of the next run.
A worker parses the DAG file anew for each task and never sees that."""

from __future__ import annotations

import copy
from typing import Any


class FreshParams:
    """Every DAG of a DAG bag with the params it was parsed with, copied out for each run."""

    def __init__(self, dags: dict[str, Any]) -> None:
        self._dags = dags
        self._params = {dag_id: ({task.task_id: copy.deepcopy(task.params) for task in dag.tasks},
                                 copy.deepcopy(dag.params)) for dag_id, dag in dags.items()}

    def dag(self, dag_id: str) -> Any:
        dag = copy.deepcopy(self._dags[dag_id])
        task_params, dag_params = self._params[dag_id]
        dag.params = copy.deepcopy(dag_params)
        for task in dag.tasks:
            task.params = copy.deepcopy(task_params[task.task_id])
        return dag
