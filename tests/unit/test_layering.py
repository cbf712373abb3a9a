"""Data flows one way: io -> data -> trainers / compress -> hub. The lower packages import nothing above them."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO

HIGHER = ("trainers", "recipes", "compress", "hub", "export", "evaluation", "runtime", "report")


@pytest.mark.parametrize("package", ["data", "losses", "teacher_cache"])
def test_lower_packages_do_not_import_higher_ones(package):
    for path in (REPO / "hfkit" / package).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.lstrip(".").split(".")
                top = parts[1] if parts[0] == "hfkit" and len(parts) > 1 else parts[0]
                if name.startswith("..") or name.startswith("hfkit"):
                    assert top not in HIGHER, f"{path.relative_to(REPO)} imports {name}"
