"""Config mistakes are reported before torch is imported, in the words of the full check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from torchlab.config import Component, check_early, load_config
from torchlab.errors import ConfigError, DataError, TorchlabError, TrustError
from torchlab.precheck import DATA_FILES, check_data_file
from torchlab.registry import DATASETS
from torchlab.registry_index import parse_type, type_text
from torchlab.testing import CONFIG_MISTAKES, MISTAKE_FILES
from torchlab.trust import users_config

MISTAKES = {
    **CONFIG_MISTAKES,
    "size convention": ["iris", "model.hidden=[0]"],
    "unknown loss key": ["digits", "task.loss=focal", "task.loss.gama=2"],
    "unknown agent key": ["cartpole-ppo", "agent.lrr=3"],
}
# Runs each mistake through the CLI in one fresh interpreter, noting whether torch got in.
EARLY = """
import contextlib, io, json, sys
from torchlab.cli import main
out = {}
for name, args in json.loads(sys.argv[1]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            main(["train", *args])
        except SystemExit as exc:
            out[name] = [exc.code, err.getvalue(), "torch" in sys.modules]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mistakes")
    for name, text in MISTAKE_FILES.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture(scope="module")
def early(folder: Path) -> dict[str, list]:
    """``[exit status, stderr, torch imported]`` of each mistake through the CLI."""
    done = subprocess.run(
        [sys.executable, "-c", EARLY, json.dumps(MISTAKES)],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def full_error(args: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """The error of the full path alone: validation with every builder, then building."""
    from torchlab import config
    from torchlab.engine.experiment import build_experiment

    monkeypatch.setattr(config, "check_with_index", lambda raw, schema: False)
    with pytest.raises(TorchlabError) as info:
        build_experiment(load_config(args[0], args[1:]))
    return f"error: {info.value}\n"


@pytest.mark.parametrize("mistake", MISTAKES)
def test_a_mistake_is_reported_before_torch_in_the_full_checks_words(
    mistake: str, early: dict[str, list], folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, stderr, torch_imported = early[mistake]
    assert status == 2 and stderr.startswith("error: ") and stderr.count("\n") == 1
    assert not torch_imported
    monkeypatch.chdir(folder)
    assert stderr == full_error(MISTAKES[mistake], monkeypatch)


def test_a_users_own_code_is_imported_and_checked_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mine.py").write_text(
        "from torch import nn\n\n\nclass Net(nn.Module):\n"
        "    def __init__(self, in_features: int, num_classes: int, hidden: int = 8):\n"
        "        super().__init__()\n"
    )
    (tmp_path / "theirs.py").write_text("open('imported', 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    # A run folder's config (no users_config) names code: refused before anything is imported.
    with pytest.raises(TrustError, match="--trust-code"):
        check_early(
            {"name": "x", "data": {"source": "iris"}, "model": "theirs:Net", "task": "regression"}
        )
    assert not (tmp_path / "imported").exists()
    own_code = {
        "name": "x", "data": {"source": "iris"}, "model": {"name": "mine:Net"}, "task": "regression"
    }  # fmt: skip
    with users_config():
        assert check_early(own_code) is True
        with pytest.raises(ConfigError, match=r"Did you mean 'model\.hidden'"):
            check_early({**own_code, "model": {"name": "mine:Net", "hiden": 3}})
        with pytest.raises(ConfigError, match=r"optim\.lrr"):  # and what comes after it
            check_early({**own_code, "optim": {"lrr": 1}})


def test_what_only_the_builder_can_tell_is_left_to_the_full_check(tmp_path: Path) -> None:
    series_window = {"name": "co2", "window": {"lookbak": 3}}  # a typed section of its own
    raw = {
        "name": "x",
        "data": {"source": series_window},
        "model": "mlp-forecaster",
        "task": "regression",
    }
    with pytest.raises(TorchlabError, match=r"data\.source\.window\.lookbak") as full:
        load_config("co2", ["data.source.window.lookbak=3"])  # the full check catches it
    try:  # the early check may leave a nested section to it, or say the very same
        assert check_early(raw) is False
    except TorchlabError as early:
        assert str(early) == str(full.value)


@pytest.mark.parametrize("source", sorted(DATA_FILES))
def test_a_missing_data_file_is_reported_in_the_sources_own_words(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchlab.data.base import SourceContext

    monkeypatch.chdir(tmp_path)
    key = DATA_FILES[source][0]
    settings = {"name": source, key: "~/no-such-folder/data", "target": "y"}
    if source not in ("csv", "parquet"):
        settings.pop("target")
    with pytest.raises(DataError) as early:
        check_data_file({"data": {"source": settings}})
    context = SourceContext(0.1, 0.2, True, 0, "class")
    with pytest.raises(DataError) as full:
        DATASETS.build(Component(**settings), "data.source", context)
    assert str(early.value) == str(full.value)


@pytest.mark.parametrize(
    "annotation",
    [int, "int | None", "list[str] | str | None", "tuple[int, ...]", "Literal['a', 1, True]"],
)
def test_index_types_read_back_as_written(annotation: object) -> None:
    parsed = parse_type(annotation) if isinstance(annotation, str) else annotation
    assert parse_type(type_text(parsed)) == parsed


def test_index_types_name_nothing_but_plain_types() -> None:
    assert type_text(Path) is None
    with pytest.raises(ValueError, match="not an index type"):
        parse_type("os.system")
