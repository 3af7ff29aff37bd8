"""A user's own nn.Module, from the user's own folder: trained, then evaluated, predicted and
exported from anywhere, with one clear line for everything that does not fit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_iris

import torchlab
from conftest import run_cli
from torchlab.data.base import DataSpec
from torchlab.errors import ConfigError
from torchlab.models.adapt import DATA_ARGUMENTS
from torchlab.registry import MODELS

TINY_NET = '''
import torch
from torch import nn


class TinyNet(nn.Module):
    """A user's MLP: its constructor takes what it needs by name."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 16, dropout: float = 0.0):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


class TinyCNN(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


class Positional(nn.Module):
    def __init__(self, in_features, /, num_classes):
        super().__init__()


class NeedsChannels(nn.Module):
    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()


class NeedsWidth(nn.Module):
    def __init__(self, in_features: int, num_classes: int, width: int):
        super().__init__()


class NotAModule:
    def __init__(self, in_features: int):
        pass
'''

CONFIG = """
extends: iris
name: flowers
model:
  name: tiny_nets:TinyNet
  hidden: 8
trainer: {max_epochs: 1, progress: none}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's folder: their module and a config beside it, and a CSV to predict on."""
    folder = tmp_path_factory.mktemp("project")
    (folder / "tiny_nets.py").write_text(TINY_NET)
    (folder / "flowers.yaml").write_text(CONFIG)
    frame = load_iris(as_frame=True).frame.drop(columns="target").iloc[::25]
    frame.to_csv(folder / "new_flowers.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def trained(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The config trained from another folder: its module is found beside the config."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    result = run_cli("train", str(project / "flowers.yaml"), cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    return next((elsewhere / "runs" / "flowers").iterdir())


@pytest.mark.e2e  # trains, then predicts, exports and serves through the CLI
def test_a_user_class_trains_and_is_used_from_anywhere(trained, project, tmp_path) -> None:  # type: ignore[no-untyped-def]
    recorded = __import__("json").loads((trained / "code.json").read_text())
    assert [(r["module"], r["file"]) for r in recorded] == [
        ("tiny_nets", str((project / "tiny_nets.py").resolve()))
    ]
    # No PYTHONPATH, another working directory: the run knows where its code is.
    result = run_cli("evaluate", str(trained), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run_cli("predict", str(trained), str(project / "new_flowers.csv"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("id,label,p_setosa")
    result = run_cli("export", str(trained), "-f", "onnx", "-o", "onnx", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.e2e
def test_a_changed_or_missing_user_file_is_named(trained, project, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = project / "tiny_nets.py"
    original = source.read_text()
    try:
        source.write_text(original + "\n# edited\n")
        result = run_cli("evaluate", str(trained), cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"'{source.resolve()}' (module 'tiny_nets') changed since" in result.stderr
        assert run_cli("evaluate", str(trained), "--trust-code", cwd=tmp_path).returncode == 0
        shutil.move(source, project / "moved.py")
        result = run_cli("evaluate", str(trained), cwd=tmp_path)
        assert result.returncode == 2 and "which no longer exists" in result.stderr
    finally:
        if (project / "moved.py").exists():
            shutil.move(project / "moved.py", source)
        source.write_text(original)


@pytest.mark.e2e
def test_a_module_in_the_working_directory_is_found(project, tmp_path) -> None:  # type: ignore[no-untyped-def]
    shutil.copy(project / "tiny_nets.py", tmp_path)
    result = run_cli(
        "train", "digits", "model.name=tiny_nets:TinyCNN", "model.width=3",
        "trainer.max_epochs=1", "trainer.progress=none", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "test/accuracy" in result.stdout


@pytest.mark.e2e  # one CLI process per case
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.name=tiny_nets:Positional"], "takes 'in_features' as positional-only"),
        (["model.name=tiny_nets:NotAModule"], "is a class but not an nn.Module"),
        (
            ["model.name=tiny_nets:NeedsWidth"],
            "'model.width' is required by 'tiny_nets:NeedsWidth'",
        ),
        (["model.name=tiny_nets:TinyNet", "model.hiden=3"], "Did you mean 'model.hidden'"),
        (["model.name=tiny_nets:NeedsChannels"], "needs 'in_channels', which this data"),
        (["model.name=no_such_module:Net"], "Cannot import module 'no_such_module'"),
    ],
    ids=["positional", "not-a-module", "required", "typo", "undetermined", "missing"],
)
def test_what_does_not_fit_is_one_line(project, tmp_path, overrides, message) -> None:  # type: ignore[no-untyped-def]
    shutil.copy(project / "tiny_nets.py", tmp_path)
    result = run_cli("train", "iris", *overrides, "trainer.max_epochs=1", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_data_arguments_are_filled_by_name(project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(project)
    from torchlab import trust

    with trust.users_config():
        entry = MODELS.get("tiny_nets:TinyCNN")
    assert set(entry.schema.model_fields) == {"in_channels", "num_classes", "width"}
    image = DataSpec(input_shape=(3, 6, 6), target_kind="categorical", class_names=("a", "b"))
    model = entry.build({"width": 5}, "model", image, 2)
    assert model.conv.in_channels == 3 and model.conv.out_channels == 5
    assert model(torch.zeros(4, 3, 6, 6)).shape == (4, 2)
    # A value the config sets wins over the data's.
    assert entry.build({"in_channels": 1}, "model", image, 2).conv.in_channels == 1
    # Regression outputs are rescaled to the target's units, as the built-in heads are.
    with trust.users_config():
        net = MODELS.get("tiny_nets:TinyNet")
    values = DataSpec(
        input_shape=(4,), target_kind="continuous", target_names=("y",), target_mean=(100.0,),
        target_std=(10.0,),
    )  # fmt: skip
    assert isinstance(net.build({}, "model", values, 1), torch.nn.Sequential)
    assert {"in_features", "in_channels", "num_classes", "vocab_size", "seq_len"} <= set(
        DATA_ARGUMENTS
    )


def test_outside_code_needs_the_users_own_config(project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Outside a config the user gave (e.g. a run folder's), a name is not imported."""
    monkeypatch.chdir(project)
    with pytest.raises(ConfigError, match="Cannot import module"):
        torchlab.load_config("iris", {"model.name": "not_there_either:X"})
    from torchlab.errors import TrustError

    with pytest.raises(TrustError, match="pass --trust-code"):
        MODELS.get("tiny_nets_copy:TinyNet", "model.name")
