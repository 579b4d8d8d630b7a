# The two set-up commands: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench lock clean debian-tools

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) scripts/check_prereqs.py setup
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

demo: $(STAMP)
	@$(PY) scripts/check_prereqs.py demo
	$(PY) -m bhv360_backup.demo

test: $(STAMP) debian-tools
	@$(PY) scripts/check_prereqs.py test
	$(PY) -m ruff check .
	$(PY) -m pytest

# The dashboard test drives Debian's Chromium (Playwright uses it; no browser download); the
# encryption tests decrypt backups with the standard age command-line tool.
debian-tools:
	@{ command -v chromium && command -v age; } >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium age >/dev/null; } \
	  || { echo "make test: Chromium or age is missing: apt-get install chromium age" >&2; exit 1; }

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) benchmarks/bench_pg_dump.py

# Re-resolve the pins (after changing a top-level requirement in this rule).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet apache-airflow==3.3.2 apache-airflow-providers-postgres \
	  apache-airflow-providers-amazon apache-airflow-providers-slack apache-airflow-providers-smtp supabase \
	  'moto[server]' aiosmtpd pytest pytest-timeout ruff psycopg2-binary playwright hypothesis pyrage schemathesis
	{ echo "# Exact pins, resolved with pip on Python 3.11 (the official constraints URL is not reachable here)."; \
	  echo "# Regenerate: make lock"; .lock-venv/bin/pip freeze | grep -vE '^(pip|setuptools|wheel)=='; } > requirements.txt
	rm -rf .lock-venv

clean:
	rm -rf .demo
