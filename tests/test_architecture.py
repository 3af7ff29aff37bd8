"""The import rules of docs/architecture.md, enforced: import-linter's contracts in
pyproject.toml, no import cycle between modules, and no module outside the RL kind that
looks for an RL config's sections."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "torchlab"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(source: Path) -> subprocess.CompletedProcess[str]:
    """import-linter's verdict on the package under ``source`` (a ``src`` folder)."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=source,
        env={"PYTHONPATH": str(source), "PATH": "/usr/bin:/bin"},
    )


def test_the_import_contracts_hold() -> None:
    done = lint_imports(PACKAGE.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_the_contracts_catch_a_model_that_imports_training(tmp_path: Path) -> None:
    """The rules bite: one forbidden import in a copy of the package breaks two contracts."""
    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "torchlab", ignore=shutil.ignore_patterns("__pycache__"))
    layers = copy / "torchlab" / "models" / "layers.py"
    layers.write_text(layers.read_text() + "\nfrom torchlab.training import loop  # noqa\n")
    done = lint_imports(copy)
    assert done.returncode == 1, done.stdout
    assert "Contracts: 2 kept, 2 broken." in done.stdout
    assert "torchlab.models.layers -> torchlab.training.loop" in done.stdout


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    graph = grimp.build_graph("torchlab", exclude_type_checking_imports=True, cache_dir=None)
    cycles = sorted(
        f"{module} -> {imported}"
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if imported in graph.find_downstream_modules(module)  # it imports module, maybe via others
    )
    assert cycles == []


def test_only_the_rl_kind_knows_an_rl_config_by_its_agent_section() -> None:
    """``agent`` is read only under torchlab/rl/; elsewhere a run's kind is asked instead."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.is_relative_to(PACKAGE / "rl"):
            continue
        tree = ast.parse(path.read_text())
        # A family's name in messages: Registry("agent", ...) is where agents register.
        family_names = {
            id(node.args[0])
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Registry"
        }
        for node in ast.walk(tree):
            named = (isinstance(node, ast.Constant) and node.value == "agent") or (
                isinstance(node, ast.Attribute) and node.attr == "agent"
            )
            if named and id(node) not in family_names:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert found == []
