"""What a ``.pt2`` archive may hold before ``torch.export.load`` reads it.

``torch.export.load`` is not safe on a file from elsewhere: it unpickles with
``weights_only=False`` (pickled weights and constants, custom and opaque objects, and as a
fallback for the sample inputs), compiles the graph's ``guards_code`` into Python, hands
symbolic shape expressions to ``sympy.sympify`` (which evaluates them), resolves node
targets by attribute lookup from ``torch`` (``torch.os.system`` resolves), and loads
AOTInductor shared libraries. :func:`check_archive` accepts only what ``torch.export.save``
writes for a plain exported program, and refuses everything else before torch reads a byte.
"""

from __future__ import annotations

import ast
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from torchlab.errors import TrustError

# Member names below the archive's root folder, by what they hold.
_FIXED = {
    "archive_format",
    "archive_version",
    "byteorder",
    ".data/version",
    ".data/serialization_id",
}
_PROGRAM = re.compile(r"^models/(\w+)\.json$")
_SAMPLE_INPUTS = re.compile(r"^data/sample_inputs/\w+\.pt$")
_WEIGHTS_CONFIG = re.compile(r"^data/(weights|constants)/\w+_(weights|constants)_config\.json$")
_TENSOR = re.compile(r"^data/(weights/weight|constants/tensor)_\d+$")
# Node targets: ATen/prims operators, higher-order operators, and the operator module's
# arithmetic on symbolic sizes.
_TARGET = re.compile(
    r"^(torch\.ops\.(aten|prims|higher_order)\.\w+(\.\w+)?"
    r"|_operator\.(getitem|add|sub|mul|floordiv|truediv|mod|neg|pow|eq|ne|lt|le|gt|ge|and_|or_)"
    r"|torch\.(sym_\w+|_sym_\w+)|math\.(ceil|floor|trunc|sqrt))$"
)
# Symbolic shape expressions, which torch writes with ``sympy.srepr`` and reads back with
# ``sympy.sympify`` (an ``eval``): only calls of these sympy and torch names, with numbers,
# quoted symbol names and ``keyword=True`` arguments. No attribute access, no other names.
_SYMBOL = re.compile(r"^[a-z]+\d+$")
_EXPR_NAMES = {
    # sympy
    "Symbol", "Integer", "Rational", "Float", "Half", "One", "Zero", "NegativeOne", "Add",
    "Mul", "Pow", "Mod", "Max", "Min", "Abs", "floor", "ceiling", "Eq", "Ne", "Lt", "Le", "Gt",
    "Ge", "Equality", "Unequality", "StrictLessThan", "StrictGreaterThan", "LessThan",
    "GreaterThan", "And", "Or", "Not", "true", "false", "BooleanTrue", "BooleanFalse",
    "Infinity", "NegativeInfinity", "oo", "zoo", "nan", "Piecewise", "ExprCondPair",
    # torch.utils._sympy
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt",
    "CeilDiv", "LShift", "RShift", "IsNonOverlappingAndDenseIndicator", "TruncToFloat",
    "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "FloatPow", "PowByNatural",
    "IntTrueDiv", "FloatTrueDiv", "BitwiseFn_bitwise_and", "BitwiseFn_bitwise_or", "Identity",
    "OpaqueUnaryFn_sqrt", "IntInfinity", "NegativeIntInfinity",
    # keyword arguments and their values
    "positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite",
    "infinite", "commutative", "zero", "precision", "evaluate", "True", "False",
}  # fmt: skip
# Guard code, parsed: the nodes of comparisons and arithmetic, and the tensor methods that
# give a shape.
_GUARD_NODES = (
    ast.Expression, ast.Compare, ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Subscript, ast.Load,
    ast.cmpop, ast.boolop, ast.operator, ast.unaryop,
)  # fmt: skip
_TENSOR_SHAPE_METHODS = {"size", "stride", "dim", "numel", "storage_offset"}
_MATH = {"ceil", "floor", "trunc", "sqrt"}
_EXPR_TOKEN = re.compile(
    r"\s*(?:(?P<number>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|'(?P<text>[\w.+\-]*)'"
    r"|(?P<name>[A-Za-z_]\w*)|(?P<punct>\*\*|//|[-+*/%(),=<>!]=?))"
)


def check_archive(path: Path) -> None:
    """Raise unless ``path`` holds only a plain exported program's graph, weights and inputs.

    Raises:
        TrustError: The archive holds anything that could run code when loaded.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
            if len(set(names)) != len(names):  # readers may disagree on which copy is read
                _refuse(path, "it holds two files of the same name")
            if len({n.split("/", 1)[0] for n in names}) != 1 or any("/" not in n for n in names):
                _refuse(path, "its files are not all inside one root folder")
            for name in names:
                _check_member(path, name.split("/", 1)[1], lambda n=name: archive.read(n))
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError) as exc:
        raise TrustError(
            f"'{path}' is not a readable .pt2 archive ({exc}); export the run again."
        ) from None


def _check_member(path: Path, name: str, read: Callable[[], bytes]) -> None:
    if name in _FIXED or _TENSOR.match(name):  # raw bytes, read as tensor storage
        return
    if _SAMPLE_INPUTS.match(name):
        _check_tensors_only(path, name, read())
    elif _WEIGHTS_CONFIG.match(name):
        folder = name.rsplit("/", 1)[0]
        for key, entry in _json(path, name, read()).get("config", {}).items():
            raw = isinstance(entry, dict) and not entry.get("use_pickle")
            if not raw or not _TENSOR.match(f"{folder}/{entry.get('path_name')}"):
                _refuse(path, f"'{key}' in {name} is a pickled object, not raw tensor data")
    elif _PROGRAM.match(name):
        _check_program(path, name, _json(path, name, read()))
    else:
        _refuse(path, f"it holds '{name}', which a plain exported program does not")


def _check_tensors_only(path: Path, name: str, data: bytes) -> None:
    """Sample inputs are a pickle that torch reads with ``weights_only=True`` and, should that
    fail, again with ``weights_only=False``: only one the safe reader accepts may pass."""
    import torch

    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception:  # any failure of the safe reader: torch would fall back to pickle
        _refuse(path, f"{name} holds pickled objects other than tensors")


def _check_program(path: Path, name: str, program: dict[str, Any]) -> None:
    for guard in program.get("guards_code") or []:
        if not _safe_guard(guard):
            _refuse(path, f"{name} carries the guard {guard!r}, which is not a shape check")
    for symbol in program.get("range_constraints", {}):
        if not _SYMBOL.match(str(symbol)):
            _refuse(path, f"{name} constrains '{symbol}', which is not a shape symbol")
    for key, value in _items(program):
        if key == "target" and isinstance(value, str) and not _TARGET.match(value):
            _refuse(path, f"{name} calls '{value}', which is not a PyTorch operator")
        if key == "expr_str" and not _safe_expression(value):
            _refuse(path, f"{name} holds the shape expression {value!r}, which is not arithmetic")
        if key == "custom_obj_values" and value:
            _refuse(path, f"{name} holds custom script objects")


def _safe_guard(text: Any) -> bool:
    """Guards are compiled with ``exec``: only comparisons and arithmetic on the sizes and
    strides of inputs (``L['past'].size()[0] == L['future'].size()[0]``) may pass."""
    if not isinstance(text, str):
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError):
        return False
    return all(_safe_guard_node(node) for node in ast.walk(tree))


def _safe_guard_node(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float, str)) and not isinstance(node.value, bytes)
    if isinstance(node, ast.Name):
        return node.id == "L" or node.id in _EXPR_NAMES
    if isinstance(node, ast.Attribute):
        return node.attr in _TENSOR_SHAPE_METHODS or (
            node.attr in _MATH and isinstance(node.value, ast.Name) and node.value.id == "math"
        )
    if isinstance(node, ast.Call):
        return not node.keywords and (isinstance(node.func, (ast.Name, ast.Attribute)))
    return isinstance(node, _GUARD_NODES)


def _safe_expression(text: Any) -> bool:
    if not isinstance(text, str):
        return False
    position, end = 0, len(text.rstrip())
    while position < end:
        token = _EXPR_TOKEN.match(text, position)
        if token is None:
            return False
        name = token["name"]
        if name is not None and name not in _EXPR_NAMES and not _SYMBOL.match(name):
            return False
        position = token.end()
    return True


def _items(data: Any) -> Iterator[tuple[str, Any]]:
    """Every ``(key, value)`` of a JSON document, at any depth."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield key, value
            yield from _items(value)
    elif isinstance(data, list):
        for value in data:
            yield from _items(value)


def _json(path: Path, name: str, data: bytes) -> dict[str, Any]:
    try:
        loaded = json.loads(data)
    except ValueError:
        _refuse(path, f"{name} is not valid JSON")
    if not isinstance(loaded, dict):
        _refuse(path, f"{name} is not a JSON object")
    return loaded


def _refuse(path: Path, why: str) -> NoReturn:
    raise TrustError(
        f"'{path}' is refused: {why}, and loading it could run code. Export the run again on "
        "this machine, or pass --trust-code if you trust where the file came from."
    )
