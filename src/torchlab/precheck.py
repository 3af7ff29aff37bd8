"""Checks of a config that need neither torch nor any registered leaf: run first, answer at once.

Importing the leaves (torch, torchvision, torchmetrics, transformers, scikit-learn, ...) takes
seconds, and a config with a typo should not wait for them.
:func:`~torchlab.config.check_early` checks the sections and each component's name and
settings against the registry index (:mod:`torchlab.registry_index`) and raises the very error
the full validation would raise. Code named as ``module:attr`` is imported under the trust
rules (:mod:`torchlab.trust`) and checked in full, which costs only what that code imports.
Where only a builder can tell (a setting of a type the index does not write out), it stops
and leaves the rest to the full validation, which runs afterwards in any case and has the last
word (:func:`torchlab.config.validate`).

The command line calls :func:`check_before_run` before it imports what a verb needs (for
``train`` it also checks that the file a built-in data source reads exists), and
:meth:`torchlab.run.Run.check_early` before a verb loads a run folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchlab.config import apply_overrides, check_early, read_recipe, with_absolute_paths
from torchlab.errors import DataError
from torchlab.trust import users_config

# What a built-in source reads first, and the words it raises when that does not exist:
# (setting, whether ``~`` is expanded in the message, message). tests/test_precheck.py holds
# each to what the source itself raises.
DATA_FILES = {
    "csv": ("path", True, "Data file '{path}' does not exist; check the path (from {cwd})."),
    "parquet": ("path", True, "Data file '{path}' does not exist; check the path (from {cwd})."),
    "series": ("path", False, "Series file '{path}' does not exist; check data.source.path."),
    "text-csv": ("path", False, "Text file '{path}' does not exist; check the path."),
    "text-jsonl": ("path", False, "Text file '{path}' does not exist; check the path."),
    "text-folder": (
        "path",
        False,
        "Folder '{path}' does not exist; give a folder with one sub-folder per class.",
    ),
    "image-folder": ("root", True, "data.source.root '{path}' is not a folder; check the path."),
    "image-csv": ("csv", True, "data.source.csv '{path}' does not exist; check the path."),
}


def check_before_run(
    recipe: str | Path, overrides: list[str] | dict[str, Any] = (), *, data: bool = False
) -> None:
    """Read a recipe with its overrides and check it early; ``data``: and its data file.

    The config is the user's own, so the code it names is imported and checked here too, as
    :func:`~torchlab.config.load_config` would.
    """
    path = Path(str(recipe))
    with users_config(path.parent if path.is_file() else None):
        raw = with_absolute_paths(apply_overrides(read_recipe(recipe), overrides))
        if check_early(raw) and data:
            check_data_file(raw)


def check_data_file(raw: dict[str, Any]) -> None:
    """Raise the built-in data source's own error when the file it reads does not exist."""
    source = raw.get("data", {}).get("source")
    if not isinstance(source, dict) or source.get("name") not in DATA_FILES:
        return
    key, expand, message = DATA_FILES[source["name"]]
    value = source.get(key)
    if isinstance(value, str) and not Path(value).expanduser().exists():
        path = Path(value).expanduser() if expand else Path(value)
        raise DataError(message.format(path=path, cwd=Path.cwd()))
