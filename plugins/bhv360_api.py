"""Airflow plugin: the BHV360 backup API at /api/backup (POST /restore, GET /backups) and the
Backups page (/api/backup/dashboard) in the UI's navigation."""

from airflow.plugins_manager import AirflowPlugin

from bhv360_backup.api.app import create_app


class Bhv360BackupPlugin(AirflowPlugin):
    name = "bhv360_backup"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/api/backup", "name": "BHV360 backup API"}]
    external_views = [
        {"name": "Backups", "href": "/api/backup/dashboard", "destination": "nav", "url_route": "bhv360-backups"}
    ]
