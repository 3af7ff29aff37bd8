"""House rules checked on the package's source: nothing that can run code from a file.

SECURITY.md explains them: YAML through safe_load only, torch.load with weights_only=True,
no pickle, eval or exec, and torch.export.load only behind its archive check.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "torchlab"
FORBIDDEN = {"eval", "exec", "compile", "__import__", "yaml.unsafe_load", "yaml.full_load"}
FORBIDDEN_MODULES = ("pickle.", "cloudpickle.", "dill.", "marshal.")
# The one function allowed to call torch.export.load: it checks the archive first.
GUARDED_LOADER = ("exporters/exported_program.py", "load_program")


def dotted(node: ast.AST) -> str:
    """``torch.export.load`` for the expression ``torch.export.load``."""
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def calls(tree: ast.AST, function: str = "") -> list[tuple[ast.Call, str]]:
    """Every call in ``tree`` with the name of the function that makes it."""
    found = []
    for node in ast.iter_child_nodes(tree):
        inner = node.name if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
        if isinstance(node, ast.Call):
            found.append((node, function))
        found += calls(node, inner)
    return found


def violations(path: Path, root: Path = PACKAGE) -> list[str]:
    where = path.relative_to(root).as_posix()
    found = []
    for node, function in calls(ast.parse(path.read_text(), str(path))):
        call = dotted(node.func)
        keywords = {k.arg: k.value for k in node.keywords}
        line = f"{where}:{node.lineno} {call}"
        if call in FORBIDDEN or call.startswith(FORBIDDEN_MODULES) or call.endswith("yaml.load"):
            found.append(line)
        elif call == "torch.load":
            weights_only = keywords.get("weights_only")
            if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                found.append(f"{line} without weights_only=True")
        elif call == "torch.export.load" and (where, function) != GUARDED_LOADER:
            found.append(f"{line} outside {GUARDED_LOADER[1]}")
        remote = keywords.get("trust_remote_code")
        if isinstance(remote, ast.Constant) and remote.value is True:
            found.append(f"{line} with trust_remote_code=True")
    return found


def test_the_package_never_runs_code_from_files() -> None:
    found = sorted({v for path in PACKAGE.rglob("*.py") for v in violations(path)})
    assert found == []


@pytest.mark.parametrize(
    "source",
    [
        "import yaml\nyaml.load(open('x'))",
        "import torch\ntorch.load('x')",
        "import torch\ntorch.load('x', weights_only=False)",
        "import pickle\npickle.loads(b'')",
        "eval('1')",
        "import torch\ndef f():\n    torch.export.load('x')",
        "AutoModel.from_pretrained('x', trust_remote_code=True)",
    ],
)
def test_the_rule_catches_each_pattern(source: str, tmp_path: Path) -> None:
    path = tmp_path / "module.py"
    path.write_text(source)
    assert len(violations(path, tmp_path)) == 1
