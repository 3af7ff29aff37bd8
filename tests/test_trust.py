"""Run and export folders are data: loading one never imports or unpickles code it names,
unless the user passes --trust-code (or the run recorded the code and it is unchanged).

Each hostile folder is built for real, and a marker file shows whether its code ran.
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from sklearn.datasets import load_iris

import torchlab
from conftest import run_cli
from torchlab.api import export
from torchlab.errors import TrustError
from torchlab.exporters.pt2_check import check_archive

FAST = {"trainer.max_epochs": 1, "trainer.progress": "none"}


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory: pytest.TempPathFactory) -> torchlab.Run:
    return torchlab.train("iris", FAST, output_dir=tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def program(iris_run: torchlab.Run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A genuine exported-program export of the iris run."""
    return export(iris_run, "exported-program", output=tmp_path_factory.mktemp("ep") / "ep")


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rows") / "flowers.csv"
    load_iris(as_frame=True).frame.drop(columns="target").iloc[::30].to_csv(path, index=False)
    return path


class WritesMarker:
    """Unpickling this runs ``open(marker, "w")``: the code a crafted pickle would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.marker, "w"))


def tampered(source: Path, target: Path, change) -> Path:  # type: ignore[no-untyped-def]
    """A copy of an exported-program folder whose ``model.pt2`` members pass through
    ``change(name, data) -> {name: data}`` (several members, or none, may come out)."""
    shutil.copytree(source, target)
    with (
        zipfile.ZipFile(source / "model.pt2") as original,
        zipfile.ZipFile(target / "model.pt2", "w") as copy,
    ):
        for name in original.namelist():
            for out_name, data in change(name, original.read(name)).items():
                copy.writestr(out_name, data)
    return target


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def pickled(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save(((WritesMarker(marker),), {}), buffer)
    return buffer.getvalue()


def edit_program(edit):  # type: ignore[no-untyped-def]
    """A ``change`` for :func:`tampered` that edits the graph's JSON."""

    def change(name: str, data: bytes) -> dict[str, bytes]:
        if name.endswith("models/model.json"):
            program = json.loads(data)
            edit(program)
            data = json.dumps(program).encode()
        return {name: data}

    return change


@pytest.mark.e2e  # one CLI process per hostile folder
def test_a_crafted_sample_input_pickle_runs_nothing(cli, program, rows, tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "ran"
    hostile = tampered(
        program,
        tmp_path / "hostile",
        lambda name, data: {name: pickled(marker) if "sample_inputs" in name else data},
    )
    for verb in (
        ["predict", str(hostile), str(rows)],
        ["serve", str(hostile), "--port", free_port()],
    ):
        result = run_cli(*verb, cwd=tmp_path, timeout=120)  # a server that starts would hang
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
        assert "sample_inputs/model.pt holds pickled objects" in result.stderr
        assert "--trust-code" in result.stderr
        assert not marker.exists()
    # The genuine export loads and predicts as before.
    assert cli("predict", str(program), str(rows)).returncode == 0


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda p: p.update(guards_code=["__import__('os')"]), "not a shape check"),
        (
            lambda p: p.update(guards_code=["L['x'].size()[0] == L['x'].__class__.__name__"]),
            "not a shape check",
        ),
        (
            lambda p: p["graph_module"]["graph"]["nodes"][0].update(target="torch.os.system"),
            "calls 'torch.os.system'",
        ),
        (
            lambda p: p["graph_module"]["graph"]["nodes"][0]["outputs"].append(
                {"as_sym_int": {"as_expr": {"expr_str": "__import__('os').system('id')"}}}
            ),
            "is not arithmetic",
        ),
        (lambda p: p["range_constraints"].update({"os.system": {}}), "not a shape symbol"),
    ],
    ids=["guards", "guard-attribute", "target", "sympify", "range"],
)
def test_graphs_that_would_run_python_are_refused(program, tmp_path, edit, reason) -> None:  # type: ignore[no-untyped-def]
    hostile = tampered(program, tmp_path / "hostile", edit_program(edit))
    with pytest.raises(TrustError, match=reason):
        check_archive(hostile / "model.pt2")


def test_pickled_weights_and_foreign_members_are_refused(program, tmp_path) -> None:  # type: ignore[no-untyped-def]
    def pickle_weights(name: str, data: bytes) -> dict[str, bytes]:
        if name.endswith("model_weights_config.json"):
            config = json.loads(data)
            next(iter(config["config"].values()))["use_pickle"] = True
            data = json.dumps(config).encode()
        return {name: data}

    hostile = tampered(program, tmp_path / "weights", pickle_weights)
    with pytest.raises(TrustError, match="is a pickled object"):
        check_archive(hostile / "model.pt2")

    def add_library(name: str, data: bytes) -> dict[str, bytes]:
        root = name.split("/")[0]
        extra = (
            {f"{root}/data/aotinductor/model/model.so": b"\x7fELF"}
            if "archive_format" in name
            else {}
        )
        return {name: data, **extra}

    hostile = tampered(program, tmp_path / "aoti", add_library)
    with pytest.raises(TrustError, match=r"data/aotinductor/model/model\.so"):
        check_archive(hostile / "model.pt2")


def test_sidecar_paths_stay_inside_the_export(iris_run, program, rows, tmp_path) -> None:  # type: ignore[no-untyped-def]
    onnx = export(iris_run, "onnx", output=tmp_path / "onnx")
    sidecar = json.loads((onnx / "export.json").read_text())
    (onnx / "export.json").write_text(json.dumps({**sidecar, "file": "../ep/model.pt2"}))
    shutil.copytree(program, tmp_path / "ep")
    with pytest.raises(TrustError, match="lies outside"):
        torchlab.predict(onnx, [rows])
    (onnx / "export.json").write_text(json.dumps(sidecar))
    (onnx / "model.onnx").unlink()
    (onnx / "model.onnx").symlink_to(tmp_path / "ep" / "model.pt2")
    with pytest.raises(TrustError, match="lies outside"):
        torchlab.predict(onnx, [rows])


EVIL_MODULE = """
from pathlib import Path
Path(__file__).with_name("imported").write_text("yes")
from torchlab.data.tabular import TabularFeaturizer as Featurizer
"""


@pytest.mark.slow  # the run case runs in make test
def test_an_export_naming_outside_code_imports_it_only_when_trusted(
    cli, iris_run, rows, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    onnx = export(iris_run, "onnx", output=tmp_path / "onnx")
    sidecar = json.loads((onnx / "export.json").read_text())
    sidecar["preprocessing"]["kind"] = "evil_featurizer:Featurizer"
    (onnx / "export.json").write_text(json.dumps(sidecar))
    (tmp_path / "evil_featurizer.py").write_text(EVIL_MODULE)  # in the working directory
    result = cli("predict", str(onnx), str(rows))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "names code from outside torchlab ('evil_featurizer')" in result.stderr
    assert not (tmp_path / "imported").exists()
    trusted = cli("predict", str(onnx), str(rows), "--trust-code")
    assert (tmp_path / "imported").exists(), trusted.stderr


@pytest.mark.e2e  # CLI processes
def test_a_run_naming_outside_code_imports_it_only_when_trusted(cli, iris_run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = Path(shutil.copytree(iris_run.dir, tmp_path / "run"))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["trainer"]["callbacks"] = [{"name": "evil_callback:Hook"}]
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "evil_callback.py").write_text(EVIL_MODULE)
    for verb in ("evaluate", "report"):
        result = cli(verb, str(run))
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "evil_callback" in result.stderr and "--trust-code" in result.stderr
        assert not (tmp_path / "imported").exists()
    # A code.json cannot vouch for a file inside the run folder itself.
    shutil.move(tmp_path / "evil_callback.py", run / "evil_callback.py")
    (run / "code.json").write_text(json.dumps([{
        "module": "evil_callback", "file": str(run / "evil_callback.py"), "root": str(run),
        "sha256": "0" * 64,
    }]))  # fmt: skip
    result = cli("evaluate", str(run))
    assert result.returncode == 2 and "records code inside itself" in result.stderr
    assert not (run / "imported").exists()


@pytest.mark.e2e  # CLI processes
def test_damaged_run_configs_are_one_line(cli, iris_run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = Path(shutil.copytree(iris_run.dir, tmp_path / "run"))
    for text in ("data: [unclosed", "!!python/object/apply:os.system ['id']", "- a list"):
        (run / "config.yaml").write_text(text)
        result = cli("evaluate", str(run))
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"error: '{run / 'config.yaml'}'")
        assert "Traceback" not in result.stderr


def test_a_pretrained_folder_with_pickled_weights_is_refused(tiny_bert, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from torchlab.config import Component
    from torchlab.data.base import DataSpec
    from torchlab.registry import MODELS

    folder = Path(shutil.copytree(tiny_bert, tmp_path / "bert"))
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "ran"
    torch.save({"weights": WritesMarker(marker)}, folder / "pytorch_model.bin")
    spec = DataSpec(
        input_shape=(16,), target_kind="categorical", class_names=("a", "b"), vocab_size=100
    )
    encoder = Component(name="hf-encoder", path=str(folder))
    with pytest.raises(TrustError, match=r"only as a pickle \(\*\.bin\)"):
        MODELS.build(encoder, "model", spec, 2)
    assert not marker.exists()


@pytest.mark.parametrize("content", ["pickle", "garbage", "empty-safetensors"])
def test_a_weights_file_that_is_not_a_state_dict_is_one_line(content, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from torchlab.errors import ConfigError
    from torchlab.models.vision.pretrained import load_weights_file

    marker = tmp_path / "ran"
    path = tmp_path / ("weights.safetensors" if content == "empty-safetensors" else "weights.pth")
    if content == "pickle":
        torch.save({"conv.weight": WritesMarker(marker)}, path)
    else:
        path.write_bytes(b"\x80\x63garbage" if content == "garbage" else b"xx")
    with pytest.raises(ConfigError, match="is not a safetensors file or a state dict") as caught:
        load_weights_file(path)
    assert "weights_only" not in str(caught.value)  # torch's unsafe advice is not passed on
    assert not marker.exists()
