"""Export: every format is verified against the eager model, carries a usable sidecar and
predicts what the run predicts; unfaithful or unsupported exports fail with one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits, load_iris
from torch import nn

import torchlab
from torchlab.data.base import DataSpec
from torchlab.errors import ConfigError, ExportError
from torchlab.exporters import export
from torchlab.exporters.base import exporter
from torchlab.exporters.inputs import input_kind
from torchlab.exporters.verify import FLOAT, verify
from torchlab.registry import MODELS

FAST = {"trainer.max_epochs": 2, "trainer.progress": "none"}
FORMATS = ["torchscript", "onnx", "exported-program"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> torchlab.Run:
    return torchlab.train("digits", FAST, output_dir=tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory: pytest.TempPathFactory) -> torchlab.Run:
    return torchlab.train("iris", FAST, output_dir=tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("digits")
    images = load_digits().images[:9]
    for i, image in enumerate(images):
        Image.fromarray((image * 16).clip(0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def iris_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("iris") / "flowers.csv"
    frame = load_iris(as_frame=True).frame.drop(columns="target")
    frame.iloc[::13].to_csv(path, index=False)
    return path


def assert_same_predictions(a: pd.DataFrame, b: pd.DataFrame, atol: float = 1e-5) -> None:
    assert list(a.columns) == list(b.columns)
    assert a["label"].tolist() == b["label"].tolist()
    probs = [c for c in a.columns if c.startswith("p_")]
    np.testing.assert_allclose(a[probs].to_numpy(), b[probs].to_numpy(), atol=atol)


@pytest.mark.parametrize("format", FORMATS)
def test_image_export_predicts_like_the_run(format, digits_run, digit_files, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = export(digits_run, format, output=tmp_path / format)
    sidecar = json.loads((path / "export.json").read_text())
    check = sidecar["verification"]
    assert [c["shape"][0] for c in check["cases"]] == [1, 2, 7]
    assert check["max_abs_error"] <= FLOAT.atol + FLOAT.rtol * 100
    assert check["label_agreement"] == 1.0
    assert sidecar["input"] == {"kind": "image", "shape": ["batch", 1, 8, 8], "dtype": "float32"}
    assert sidecar["class_names"] == [str(i) for i in range(10)]
    assert sidecar["preprocessing"]["kind"] == "image"
    assert sidecar["preprocessing"]["mean"] == pytest.approx(digits_run.featurizer.mean)
    assert sidecar["versions"]["torch"] == torch.__version__
    expected = torchlab.predict(digits_run, [digit_files])
    assert_same_predictions(torchlab.predict(path, [digit_files]), expected)


@pytest.mark.parametrize("format", ["torchscript", "onnx"])
def test_tabular_export_predicts_like_the_run(format, iris_run, iris_csv, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = export(iris_run, format, output=tmp_path / format)
    sidecar = json.loads((path / "export.json").read_text())
    assert sidecar["input"]["shape"] == ["batch", 4]
    columns = [c["name"] for c in sidecar["preprocessing"]["columns"]]
    assert columns == list(load_iris(as_frame=True).frame.columns[:4])
    assert all(c["std"] > 0 for c in sidecar["preprocessing"]["columns"])
    assert_same_predictions(
        torchlab.predict(path, [iris_csv]), torchlab.predict(iris_run, [iris_csv])
    )


@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_int8_export_stays_close_and_is_recorded(format, iris_run, iris_csv, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = export(iris_run, format, quantize="dynamic-int8", output=tmp_path / "q")
    sidecar = json.loads((path / "export.json").read_text())
    assert sidecar["quantize"] == "dynamic-int8"
    assert sidecar["verification"]["tolerance"] == {"atol": 0.01, "rtol": 0.1}
    assert sidecar["verification"]["max_abs_error"] > 0  # int8 weights really changed
    if format == "onnx":
        import onnx

        ops = {node.op_type for node in onnx.load(str(path / "model.onnx")).graph.node}
        assert ops & {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}
    assert_same_predictions(
        torchlab.predict(path, [iris_csv]), torchlab.predict(iris_run, [iris_csv]), atol=0.1
    )


def test_quantizing_an_exported_program_fails_clearly(iris_run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ExportError, match="use --format onnx or torchscript with --quantize"):
        export(iris_run, "exported-program", quantize="dynamic-int8", output=tmp_path / "q")
    assert not (tmp_path / "q").exists()


def test_unknown_format_and_quantisation_name_the_options(iris_run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="Did you mean 'onnx'"):
        export(iris_run, "onxx")
    with pytest.raises(ExportError, match="use one of: dynamic-int8"):
        export(iris_run, "onnx", quantize="int4")


def test_existing_export_is_kept_unless_overwrite(iris_run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = export(iris_run, "torchscript", output=tmp_path / "ts")
    with pytest.raises(ExportError, match="pass --overwrite"):
        export(iris_run, "torchscript", output=first)
    assert export(iris_run, "torchscript", output=first, overwrite=True) == first
    assert sorted(p.name for p in first.iterdir()) == ["export.json", "model.pt"]


def test_default_directory_and_the_top_level_verb(iris_run) -> None:  # type: ignore[no-untyped-def]
    import torchlab.exporters  # importing the package must not hide the torchlab.export() verb

    path = torchlab.export(iris_run, "torchscript")
    assert path == iris_run.dir / "exports" / "torchscript"
    assert torchlab.export is torchlab.exporters.export


class BakesBatchSize(nn.Module):
    """Scripting fails (generator expression), and the trace bakes in the example's batch."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = int(x.shape[0])
        return self.linear(x) + sum(torch.zeros(rows, 1) for _ in range(1))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_an_unfaithful_trace_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, kind = BakesBatchSize().eval(), input_kind("tabular")
    chosen = exporter("torchscript")
    details = chosen.save(model, kind.example((4,), 2), kind, tmp_path / "m.pt", False)
    assert details == {"method": "trace"}
    with pytest.raises(ExportError, match=r"input shaped \(1, 4\).*try another --format"):
        verify(model, chosen.load(tmp_path / "m.pt"), kind, (4,), FLOAT)


SPECS = {
    "tabular": DataSpec(input_shape=(6,), target_kind="categorical", class_names=("a", "b", "c")),
    "image": DataSpec(input_shape=(3, 16, 16), target_kind="categorical", class_names=("a", "b")),
}


# Families with inputs of their own are exported by their own tests: torchvision backbones
# (larger images, tests/test_transfer.py), the Transformer text classifier (token ids,
# tests/test_text_recipes.py). Detectors, torchvision segmentation heads, seq2seq and language
# models, and forecasters (dict inputs) are not exported yet. The U-Net is, like any image model.
OWN_EXPORT_TESTS = (
    "torchlab.models.vision.backbones",
    "torchlab.models.vision.detection",
    "torchlab.models.vision.segmentation_heads",
    "torchlab.models.text.",
    "torchlab.models.forecasting.",
)
EXPORTED = [
    n for n in MODELS.names() if not MODELS.get(n).builder.__module__.startswith(OWN_EXPORT_TESTS)
]


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("model_name", EXPORTED)
def test_every_registered_model_exports_with_parity(model_name: str, format: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Contract over the model registry: each model, on each input kind it accepts."""
    from torchlab.config import Component

    exported = 0
    for kind_name, spec in SPECS.items():
        try:
            model = MODELS.build(Component(name=model_name), "model", spec, 3).eval()
        except ConfigError:
            continue  # the model does not take this kind of input
        torch.manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.2)
        kind = input_kind(kind_name)
        chosen = exporter(format)
        path = tmp_path / f"{kind_name}{Path(chosen.filename).suffix}"
        chosen.save(model, kind.example(spec.input_shape), kind, path, False)
        result = verify(model, chosen.load(path), kind, spec.input_shape, FLOAT)
        assert result["max_abs_error"] <= result["worst_case"]["bound"]
        exported += 1
    assert exported, f"model '{model_name}' accepted none of {sorted(SPECS)}"


@pytest.mark.slow
def test_cli_export_and_predict_from_the_export(cli, digits_run, digit_files, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "onnx"
    result = cli("export", str(digits_run.dir), "--format", "onnx", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert f"Exported to {out}" in result.stdout and "max abs error" in result.stdout
    result = cli("predict", str(out), str(digit_files), "-o", str(tmp_path / "p.csv"))
    assert result.returncode == 0, result.stderr
    assert_same_predictions(
        pd.read_csv(tmp_path / "p.csv", dtype={"label": str}),
        torchlab.predict(digits_run, [digit_files]).astype({"label": str}),
    )


@pytest.mark.slow
def test_cli_export_errors_are_one_line(cli, iris_run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = cli("export", str(iris_run.dir), "--format", "tflite")
    assert result.returncode == 2
    assert result.stderr.startswith("error: Unknown export format 'tflite'")
    assert "Traceback" not in result.stderr
    result = cli("predict", str(tmp_path), "x.csv")
    assert result.returncode == 2 and "not a torchlab run directory" in result.stderr
