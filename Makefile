# The set-up commands: `make demo`, `make ui` and `make test`. Each creates .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo ui test test-fast lint bench soak lock clean debian-tools

# The development venv holds the runtime pins, the test tools and the Celery worker's pins (all resolved
# together); the production image installs requirements.txt alone.
$(STAMP): requirements.txt requirements-dev.txt requirements-celery.txt pyproject.toml
	@$(PYTHON) scripts/check_prereqs.py setup
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -r requirements-celery.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

demo: $(STAMP)
	@$(PY) scripts/check_prereqs.py demo
	$(PY) -m bhv360_backup.demo

# The product in a real local Airflow (api-server, scheduler, DAG processor) on what `make demo` made,
# until Ctrl-C; prints the URL and the login.
ui: $(STAMP)
	@$(PY) scripts/check_prereqs.py demo
	$(PY) -m bhv360_backup.demo.ui

# The fast tier: the package's logic without servers or dag.test() (seconds).
test-fast: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -m fast -q

# The whole suite, each test once: the fast tier first (a broken rule shows in seconds), then the rest.
test: test-fast debian-tools
	@$(PY) scripts/check_prereqs.py test
	$(PY) -m pytest -m "not fast"

# The dashboard and UI tests drive Debian's Chromium (Playwright uses it; no browser download); the
# encryption tests decrypt backups with the standard age command-line tool; the audit report's PDF is
# laid out by WeasyPrint, which needs Pango.
debian-tools:
	@{ command -v chromium && command -v age && ldconfig -p | grep -q libpangoft2-1.0; } >/dev/null \
	  || { apt-get update -qq && apt-get install -y -qq chromium age libpango-1.0-0 libpangoft2-1.0-0 >/dev/null; } \
	  || { echo "make test: Chromium, age or Pango is missing: apt-get install chromium age libpango-1.0-0 libpangoft2-1.0-0" >&2; exit 1; }

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) benchmarks/bench_pg_dump.py

# The randomized point-in-time differential tests (database and storage), longer than CI runs them, over several seeds.
soak: $(STAMP)
	for seed in 1 2 3 4 5 6 7 8 9 10; do \
	  BHV360_SOAK_SEED=$$seed BHV360_SOAK_ROUNDS=60 BHV360_SOAK_SAMPLES=12 \
	    $(PY) -m pytest -q tests/restore/test_pitr_randomized.py tests/restore/test_storage_randomized.py || exit 1; \
	done

# Re-resolve the pins of requirements.txt, requirements-dev.txt and requirements-celery.txt (after
# changing a top-level requirement in scripts/lock.py).
lock:
	$(PYTHON) scripts/lock.py

clean:
	rm -rf .demo
