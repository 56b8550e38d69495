"""Guards on the code itself: the core stays free of Dagster, and the style check passes."""

import ast
import subprocess
import sys
from pathlib import Path

from .conftest import PROJECT_ROOT

CORE = PROJECT_ROOT / "ecg_assets" / "core"


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_never_imports_dagster():
    offenders = [
        str(path.relative_to(PROJECT_ROOT)) for path in CORE.rglob("*.py") if "dagster" in _imported_modules(path)
    ]
    assert offenders == []


def test_flake8_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "flake8", "ecg_assets", "ecg_assets_tests"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
