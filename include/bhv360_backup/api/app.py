"""The seed's backup API, served by the Airflow API server under ``/api/backup``.

``POST /restore`` takes the seed's body and creates a ``bhv360_restore`` run (the run validates
again, against the locations and targets, before it writes anything); ``GET /backups`` lists the
inventory; ``GET /dashboard`` is the backups page linked from the Airflow UI. All require a token
Airflow's own API accepts (``POST /auth/token``), or the UI's login cookie.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Body, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

from bhv360_backup.api.airflow_internals import (
    DagNotReady,
    DagPaused,
    create_run,
    current_user,
    may_read,
    may_trigger,
    readable_dags,
)
from bhv360_backup.restore.request import REQUEST_SCHEMA, InvalidRequest, parse_request

RESTORE_DAG_ID = "bhv360_restore"


class Accepted(BaseModel):
    dag_id: str
    dag_run_id: str
    url: str
    reused: bool = False
    active_restores: list[str] = []
    detail: str | None = None


class Refused(BaseModel):
    detail: list[str]


class Message(BaseModel):
    detail: str


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Message, "description": "No token."},
    403: {"model": Message, "description": "The token is invalid or lacks the permission on bhv360_restore."},
}
RESTORE_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": Accepted, "description": "A bhv360_restore run was created; it validates again before writing."},
    400: {"model": Message, "description": "The body cannot be decoded (not UTF-8)."},
    **AUTH_RESPONSES,
    409: {"model": Message, "description": "bhv360_restore is paused: unpause it (UI toggle, or "
                                           "`airflow dags unpause bhv360_restore`), then send the request again."},
    422: {"model": Refused, "description": "The request is refused; each problem names its field."},
    503: {"model": Message, "description": "bhv360_restore is not loaded yet (the DAG processor has not parsed it, "
                                           "or its file fails to import); nothing was created. Retry later."},
}
NOT_READY = (f"{RESTORE_DAG_ID} is not loaded in Airflow yet: the DAG processor has not parsed dags/bhv360_restore.py, "
             "or the file fails to import (see `airflow dags list-import-errors`). No restore was started; retry "
             "once the DAG shows in the UI.")
PAUSED = (f"{RESTORE_DAG_ID} is paused, so a run would wait in the queue: unpause it in the UI or with "
          f"`airflow dags unpause {RESTORE_DAG_ID}`, then send the request again. No restore was started.")


def _variable(name: str, default: str) -> str:
    from airflow.models.variable import Variable

    return Variable.get(name, default_var=default)


def server_settings():
    """Settings as the API server sees them: Variables from the metadata DB or the environment."""
    from bhv360_backup.settings import Settings

    return Settings.load(_variable)


def create_app() -> FastAPI:
    app = FastAPI(title="BHV360 backup API", description=__doc__)

    @app.exception_handler(RequestValidationError)
    async def refused(request: Request, error: RequestValidationError) -> JSONResponse:
        """A body FastAPI cannot read (not JSON) is refused in the same shape as one the restore refuses."""
        problems = [f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}" for problem in error.errors()]
        return JSONResponse(status_code=422, content={"detail": problems})

    @app.post("/restore", status_code=202, dependencies=[Depends(may_trigger(RESTORE_DAG_ID))],
              responses=RESTORE_RESPONSES,
              openapi_extra={"requestBody": {"required": True,
                                             "content": {"application/json": {"schema": REQUEST_SCHEMA}}}})
    def restore(
        request: Request, body: Annotated[Any, Body()], user: Annotated[Any, Depends(current_user)],
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200,
                                                      description="A retried request with the same key (and "
                                                                  "user) gets the run the first one created")] = None,
    ) -> JSONResponse:
        settings = server_settings()
        try:
            parsed = parse_request(body, backup_root=str(settings.backup_root), bucket=settings.s3_bucket)
        except InvalidRequest as error:
            return JSONResponse(status_code=422, content={"detail": error.problems})
        try:
            created = create_run(RESTORE_DAG_ID, parsed.to_dict(), user.get_name(), idempotency_key)
        except DagNotReady:
            return JSONResponse(status_code=503, content={"detail": NOT_READY}, headers={"Retry-After": "60"})
        except DagPaused:
            return JSONResponse(status_code=409, content={"detail": PAUSED})
        base = str(request.base_url).rstrip("/")
        detail = None
        if created.active:
            detail = (f"another restore is active ({', '.join(created.active)}): this one waits until it ends, then "
                      "runs against what that one left; cancel it in the UI if it repeats a request")
        return JSONResponse(status_code=202, content={
            "dag_id": RESTORE_DAG_ID,
            "dag_run_id": created.run_id,
            "url": f"{base}/dags/{RESTORE_DAG_ID}/runs/{quote(created.run_id, safe='')}",
            "reused": created.reused,
            "active_restores": created.active,
            "detail": detail,
        })

    @app.get("/backups", dependencies=[Depends(may_read(RESTORE_DAG_ID))], responses=AUTH_RESPONSES)
    def backups() -> dict[str, Any]:
        entries, _ = current_inventory()
        return {"backups": [
            {"type": e.type, "backup_id": e.backup_id, "completed_at": e.completed_at, "size": e.size,
             "locations": sorted(name for name, state in e.locations.items() if state != "missing"),
             "verified": e.verified, "problems": {n: s for n, s in e.locations.items() if s != "verified"}}
            for e in entries
        ]}

    @app.get("/dashboard", response_class=HTMLResponse, dependencies=[Depends(may_read(RESTORE_DAG_ID))],
             responses=AUTH_RESPONSES)
    def dashboard(user: Annotated[Any, Depends(current_user)]) -> HTMLResponse:
        from datetime import timedelta

        from bhv360_backup import joblog
        from bhv360_backup.api.dashboard import render, visible_lines
        from bhv360_backup.repository.layout import BackupType
        from bhv360_backup.repository.manifest import utc_now

        settings = server_settings()
        entries, locations = current_inventory()
        interval = timedelta(minutes=settings.incremental_interval_minutes)
        lines = joblog.read(settings.log_dir)
        lines = visible_lines(lines, readable_dags(user, {line["dag_id"] for line in lines if line.get("dag_id")}))
        return HTMLResponse(render(entries, [location.name for location in locations], lines,
                                   utc_now(), window=timedelta(days=settings.retention_days),
                                   max_age={BackupType.INCREMENTAL: 3 * interval if settings.incremental else None}))

    return app


def current_inventory():
    from bhv360_backup import inventory
    from bhv360_backup.repository.layout import BackupType
    from bhv360_backup.runtime import open_locations
    from bhv360_backup.settings import S3_CONN_ID

    locations = open_locations(server_settings(), S3_CONN_ID)
    return inventory.build(locations, list(BackupType), deep=False), locations
