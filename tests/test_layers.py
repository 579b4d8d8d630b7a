"""The package's layers, read from its imports: producers and consumers meet only in the repository,
the repository depends on neither, and no backend is checked for outside ``locations/``."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "include" / "bhv360_backup"
PRODUCERS = {"producers"}
CONSUMERS = {"restore", "health", "audit", "drill", "inventory", "api", "cli"}
WIRING = {"operators", "runtime", "dag_factory", "demo"}  # Airflow's side and the demo may know everything
AIRFLOW_ONLY = WIRING - {"runtime"}  # the API plugin runs in Airflow: it opens its locations through runtime


def layer(module: str) -> str:
    return module.split(".")[0]


def imports(path: Path) -> set[str]:
    """The package modules ``path`` imports at run time (``TYPE_CHECKING`` blocks aside)."""
    tree = ast.parse(path.read_text())
    checking = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                and getattr(block.test, "id", "") == "TYPE_CHECKING" for node in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in checking:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bhv360_backup."):
            found.add(node.module.removeprefix("bhv360_backup."))
        elif isinstance(node, ast.ImportFrom) and node.module == "bhv360_backup":
            found.update(alias.name for alias in node.names)
    return found


def modules():
    for path in PACKAGE.rglob("*.py"):
        name = path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
        yield name.removesuffix(".__init__"), path


def violations(source_layers: set[str], forbidden: set[str]) -> list[str]:
    return [f"{name} imports {target}" for name, path in modules() if layer(name) in source_layers
            for target in imports(path) if layer(target) in forbidden]


def test_producers_never_import_consumers_and_consumers_never_import_producers():
    assert violations(PRODUCERS, CONSUMERS | WIRING) == []
    assert violations(CONSUMERS, PRODUCERS | AIRFLOW_ONLY) == []


def test_the_restore_never_reaches_into_the_sources():
    """What the capture and the replay share (LSN order, snapshot visibility) lives in ``postgres/``; a
    restore target's own listing is handed in by the wiring."""
    assert violations({"restore"}, {"sources", "producers"}) == []


def test_the_repository_depends_on_neither():
    assert violations({"repository"}, PRODUCERS | CONSUMERS | WIRING | {"sources"}) == []


def test_no_backend_is_checked_for_outside_locations():
    found = []
    for name, path in modules():
        if layer(name) == "locations":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance":
                names = {getattr(n, "id", "") for n in ast.walk(node.args[1])}
                if names & {"LocalLocation", "S3Location"}:
                    found.append(name)
    assert found == []


def test_a_location_stores_bytes_and_knows_nothing_of_backups():
    """As restic's backends: the layout, manifests and backups are the repository's (``repository/catalog``)."""
    assert violations({"locations"}, {"repository"} | PRODUCERS | CONSUMERS | WIRING | {"sources", "postgres"}) == []
