"""Data flows one way: every top-level module or package of hfkit sits on a floor and imports only lower floors.

errors/losses -> data/modeling/metrics -> teacher_cache/io -> evaluation/reports -> trainers/compress/hub ->
runtime -> recipes -> cli (docs/architecture.md); the public API (hfkit/__init__.py) sits above the trainers. A new module must be given a floor here, so the rule covers it.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.conftest import REPO

FLOORS = {
    0: ("errors", "noise_filters", "losses", "version"),
    1: ("data", "modeling", "metrics", "parsing", "logs", "reports"),
    2: ("teacher_cache", "io", "student"),
    3: ("evaluation", "generation"),
    4: ("trainers", "compress", "hub"),
    5: ("runtime",),
    6: ("recipes",),
    7: ("reference", "__init__"),  # the config reference (reads the recipe registry) and the public API
    8: ("cli",),
    9: ("__main__",),
}
FLOOR = {unit: floor for floor, units in FLOORS.items() for unit in units}
PACKAGE = REPO / "hfkit"


def units() -> list[str]:
    """Every top-level module and package of hfkit."""
    found = [p.stem for p in PACKAGE.glob("*.py")] + [
        p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()
    ]
    return sorted(found)


def imported_units(path) -> set[str]:
    """The top-level hfkit units a file imports (relative imports resolved against its package)."""
    package = list(path.relative_to(PACKAGE).parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            module = base + (node.module.split(".") if node.module else [])
            found |= {module[0]} if module else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "hfkit":
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {"__init__"}
        elif isinstance(node, ast.Import):
            found |= {
                a.name.split(".")[1] if "." in a.name else "__init__"
                for a in node.names
                if a.name.split(".")[0] == "hfkit"
            }
    return found


def test_every_unit_has_a_floor():
    assert sorted(set(units()) - set(FLOOR)) == [], "give each new module or package a floor in FLOORS"


@pytest.mark.parametrize("unit", units())
def test_a_unit_imports_only_lower_floors(unit):
    paths = (
        [PACKAGE / f"{unit}.py"]
        if (PACKAGE / f"{unit}.py").is_file()
        else list((PACKAGE / unit).rglob("*.py"))
    )
    for path in paths:
        for other in imported_units(path) - {unit}:
            assert other in FLOOR, f"{path.relative_to(REPO)} imports hfkit.{other}, which has no floor"
            assert FLOOR[other] < FLOOR[unit], (
                f"{path.relative_to(REPO)} (floor {FLOOR[unit]}) imports hfkit.{other} (floor {FLOOR[other]}): "
                "imports run one way, from higher floors to lower"
            )


def test_the_checker_sees_an_upward_import(tmp_path):
    # The rule's own check: a data module importing a trainer is caught.
    bad = PACKAGE / "data" / "_layering_probe.py"
    bad.write_text("from ..trainers import base_trainer\n")
    try:
        assert imported_units(bad) == {"trainers"} and FLOOR["trainers"] > FLOOR["data"]
    finally:
        bad.unlink()


def test_no_import_cycle_between_modules():
    tool = REPO.parent / "shared" / "tools" / "import_cycles.py"
    if not tool.is_file():
        pytest.skip(f"{tool} is not here (it ships beside the repository, in shared/tools)")
    result = subprocess.run(
        [sys.executable, str(tool), str(PACKAGE)], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("0 import cycles"), result.stdout
