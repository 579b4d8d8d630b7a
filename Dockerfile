# Airflow 3.3 with the BHV360 backup package and a PostgreSQL client of the database server's major
# version (pg_dump must be at least the server's major version), and Pango for the audit report's PDF.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

ARG PG_MAJOR=15
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates gnupg \
 && install -d /usr/share/postgresql-common/pgdg \
 && curl -fsSL https://www.postgresql.org/media/keys/ACCC4CF8.asc -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
 && . /etc/os-release \
 && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${VERSION_CODENAME}-pgdg main" \
      > /etc/apt/sources.list.d/pgdg.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-${PG_MAJOR} libpango-1.0-0 libpangoft2-1.0-0 \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && install -d -o airflow -m 0700 /var/backups/bhv360 /var/log/bhv360/backups
USER airflow

# the runtime pins and the Celery worker's (resolved against them); the test tools are pinned for make alone
COPY requirements.txt requirements-celery.txt /
RUN pip install --no-cache-dir -r /requirements.txt -r /requirements-celery.txt
COPY pyproject.toml /opt/bhv360/pyproject.toml
COPY include /opt/bhv360/include
RUN pip install --no-cache-dir --no-deps /opt/bhv360
