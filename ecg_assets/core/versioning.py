"""The one code fingerprint behind every reuse decision and every asset's `code_version`.

A step's result depends on the code of its entry module and of every `ecg_assets.core` module
that module imports, directly or not. Hand-picked module lists go stale (a reader fix that
changes no listed module would leave old records reused), so the set is computed: each module's
source is parsed and its `ecg_assets.core` imports are followed, transitively. The fingerprint
hashes the sources of that closure, in module-name order.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

CORE_PACKAGE = "ecg_assets.core"


CORE_DIR = Path(__file__).resolve().parent


def _source_path(module: str) -> Path | None:
    """The `.py` file of `module` (`__init__.py` for a package), or None when it is not a core module.

    Found on disk, without importing anything.
    """
    if module == CORE_PACKAGE:
        return CORE_DIR / "__init__.py"
    if not module.startswith(CORE_PACKAGE + "."):
        return None
    relative = Path(*module[len(CORE_PACKAGE) + 1 :].split("."))
    for candidate in (CORE_DIR / relative.with_suffix(".py"), CORE_DIR / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_core_modules(module: str, path: Path) -> set[str]:
    """The core modules `module`'s source imports (`from ecg_assets.core import x` counts x when it is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if _source_path(name) is not None}


@functools.lru_cache(maxsize=None)
def module_closure(*entry_modules: str) -> tuple[str, ...]:
    """Every core module the entry modules depend on (themselves included), sorted by name.

    A module's parent packages count too: importing `ecg_assets.core.datasets.cinc2017` runs
    `ecg_assets.core.datasets/__init__.py`.
    """
    pending = list(entry_modules)
    seen: set[str] = set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        path = _source_path(module)
        if path is None:
            raise ValueError(f"{module} is not a module of {CORE_PACKAGE}")
        seen.add(module)
        parents = [module.rsplit(".", depth)[0] for depth in range(1, module.count("."))]
        pending += [name for name in parents if _source_path(name) is not None]
        pending += sorted(_imported_core_modules(module, path) - seen)
    return tuple(sorted(seen))


@functools.lru_cache(maxsize=None)
def code_version(*entry_modules: str) -> str:
    """A short hash of the source of `module_closure(*entry_modules)`."""
    digest = hashlib.sha256()
    for module in module_closure(*entry_modules):
        path = _source_path(module)
        assert path is not None
        digest.update(module.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


# The entry module of each pipeline step: what its result depends on.
LABEL_MAPPING_CODE = "ecg_assets.core.label_mapping"
PROCESSING_CODE = "ecg_assets.core.preprocessing"
SPLITS_CODE = "ecg_assets.core.splits"
TRAINING_CODE = "ecg_assets.core.ensemble"
EVALUATION_CODE = "ecg_assets.core.evaluation"
POOLED_CODE = "ecg_assets.core.pooled"
GENERALISATION_CODE = "ecg_assets.core.generalisation"
