# The two set-up commands: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench lock clean debian-tools

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

# The fast tier: the package's logic without servers or dag.test() (seconds; CI runs it first).
test-fast: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -m fast -q

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

# Re-resolve the pins of requirements.txt, requirements-dev.txt and requirements-celery.txt (after
# changing a top-level requirement in scripts/lock.py).
lock:
	$(PYTHON) scripts/lock.py

clean:
	rm -rf .demo
