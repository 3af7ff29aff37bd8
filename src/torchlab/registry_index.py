"""The index of the built-in registries: each name's module and settings, known without imports.

Checking ``model: {name: mpl}`` against the registered names, or ``optim.lrr`` against the
optimizer's settings, must not wait for torch and every leaf module to import. The index,
``registry_index.json`` beside this file, holds what that check needs: per family (``model``,
``loss``, ...) each built-in name, the module that registers it, and its builder's keyword-only
settings with their types written out where they are plain (``int``, ``list[int] | None``,
``Literal['a', 'b']``; ``null`` for anything else) and their defaults.

It is generated from the registries themselves, so it cannot drift from the code unnoticed:
``tests/test_registry.py`` fails when it is stale and names the command that rewrites it::

    python -m torchlab.registry
"""

from __future__ import annotations

import ast
import json
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any, Literal, Union

INDEX_FILE = Path(__file__).with_name("registry_index.json")
COMMAND = "python -m torchlab.registry"

# The types an index writes out, by the name it writes; anything else is left to the builder.
PLAIN: dict[str, Any] = {
    "int": int, "float": float, "str": str, "bool": bool, "None": type(None), "Any": Any,
    "list": list, "tuple": tuple, "dict": dict, "set": set,
}  # fmt: skip
GENERIC = ("list", "tuple", "dict", "set")


@cache
def load() -> dict[str, Any]:
    """The committed index; empty when the file is missing (every lookup then imports)."""
    try:
        return json.loads(INDEX_FILE.read_text())
    except FileNotFoundError:
        return {}


def family(kind: str, modules: tuple[str, ...]) -> dict[str, Any] | None:
    """The indexed names of the family ``kind`` that registers from ``modules``, or None."""
    record = load().get(kind)
    return record["names"] if record and record["modules"] == list(modules) else None


# --- types as text, and back -------------------------------------------------------------


def type_text(annotation: Any) -> str | None:
    """``list[int] | None`` for that annotation; None when it is not built of plain types
    (or when :func:`parse_type` would not read the text back as the same annotation)."""
    text = _text(annotation)
    try:
        return text if text is not None and parse_type(text) == annotation else None
    except (ValueError, SyntaxError, TypeError):
        return None


def _text(annotation: Any) -> str | None:
    for name, plain in PLAIN.items():
        if annotation is plain or (name == "None" and annotation is None):
            return name
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        ok = all(type(value) in (str, int, bool) for value in args)
        return f"Literal[{', '.join(map(repr, args))}]" if ok else None
    if origin in (Union, types.UnionType):
        parts = [_text(arg) for arg in args]
        return None if None in parts else " | ".join(parts)  # type: ignore[arg-type]
    if origin in (list, tuple, dict, set) and args:
        parts = ["..." if arg is Ellipsis else _text(arg) for arg in args]
        return None if None in parts else f"{origin.__name__}[{', '.join(parts)}]"  # type: ignore[arg-type]
    return None


def parse_type(text: str) -> Any:
    """The annotation that :func:`type_text` wrote as ``text`` (names outside :data:`PLAIN`
    and ``Literal`` are refused, so nothing in the file can name other code)."""
    return _annotation(ast.parse(text, mode="eval").body)


def _annotation(node: ast.expr) -> Any:
    if isinstance(node, ast.Name) and (node.id in PLAIN or node.id == "Literal"):
        return Literal if node.id == "Literal" else PLAIN[node.id]
    if isinstance(node, ast.Constant):  # None, ..., a Literal's value
        return type(None) if node.value is None else node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return Union[_annotation(node.left), _annotation(node.right)]  # noqa: UP007
    if isinstance(node, ast.Subscript):
        base = _annotation(node.value)
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        args = tuple(_annotation(item) for item in items)
        return base[args if len(args) > 1 else args[0]]
    raise ValueError(f"not an index type: {ast.unparse(node)}")


# --- what the index records of a builder (written by torchlab.registry.write_index) ----------


def settings(schema: Any) -> dict[str, Any]:
    """``{key: {"type": ..., "default": ...}}`` of a builder's settings schema, in order."""
    out = {}
    for key, field in schema.model_fields.items():
        record: dict[str, Any] = {"type": None if field.metadata else type_text(field.annotation)}
        if field.is_required():
            record["required"] = True
        else:
            record["default"] = _literal_text(field.default)
        out[key] = record
    return out


def _literal_text(value: Any) -> str:
    """``repr(value)`` for a plain value, ``...`` for an object (whose repr may hold an id)."""
    text = repr(value)
    try:
        return text if ast.literal_eval(text) == value else "..."
    except (ValueError, SyntaxError):
        return "..."


def dumps(index: dict[str, Any]) -> str:
    return json.dumps(index, indent=1) + "\n"
