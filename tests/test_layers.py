"""Layering rules, checked on the source: who may import whom.

``eval`` (metrics, statistics, reports, Grad-CAM maths) never imports ``train`` or ``run``; only ``run`` (the
orchestration layer) and the CLI import ``run``; no production module imports the numpy test oracle
``echoclr.pipeline.reference``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import echoclr

PACKAGE = Path(echoclr.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module name a file imports (top level or inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _offenders(files, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in files:
        bad = sorted(n for n in _imports(path) if n.startswith(forbidden))
        if bad:
            found[str(path.relative_to(PACKAGE))] = bad
    return found


def test_eval_imports_neither_train_nor_run() -> None:
    files = sorted((PACKAGE / "eval").glob("*.py"))
    assert len(files) >= 5
    assert _offenders(files, ("echoclr.train", "echoclr.run")) == {}


def test_only_run_and_the_cli_import_the_orchestration_layer() -> None:
    files = [p for p in PACKAGE.rglob("*.py") if "run" not in p.relative_to(PACKAGE).parts[:1]]
    assert _offenders(files, ("echoclr.run",)) == {}


def test_production_code_does_not_import_the_test_oracle() -> None:
    files = [p for p in PACKAGE.rglob("*.py") if p.name != "reference.py"]
    assert _offenders(files, ("echoclr.pipeline.reference",)) == {}


def test_the_checker_sees_imports_inside_functions(tmp_path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from echoclr.train.finetune import finetune\n")
    assert _imports(module) >= {"echoclr.train.finetune", "echoclr.train.finetune.finetune"}
