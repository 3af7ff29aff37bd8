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
from torchlab.api import export
from torchlab.data.base import DataSpec
from torchlab.errors import ConfigError, ExportError
from torchlab.exporters.base import EXPORTERS, exporter
from torchlab.exporters.inputs import input_kind
from torchlab.exporters.verify import FLOAT, verify
from torchlab.registry import MODELS

FAST = {"trainer.max_epochs": 2, "trainer.progress": "none"}
# The formats that write a graph of their own; a TorchServe archive (mar) packs the TorchScript
# file, so it is exported end to end in tests/test_torchserve.py (and checked for parity below).
FORMATS = [name for name in EXPORTERS.describe()["names"] if name != "mar"]


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


@pytest.mark.e2e  # trains, exports, predicts
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
    assert torchlab.export is torchlab.engine.export.export


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
# tests/test_text_recipes.py), RNN text classifiers and forecasters (below). Seq2seq and
# language models are refused (below). Torchvision segmentation heads and detectors (RGB
# images, no pretrained download; detectors return boxes per image) are exported by
# tests/test_export_vision.py. The U-Net is here, like any image model.
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


@pytest.mark.parametrize("format", list(EXPORTERS.describe()["names"]))
@pytest.mark.parametrize("model_name", EXPORTED)
def test_every_registered_model_exports_with_parity(model_name: str, format: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Contract over the model and exporter registries: each model in each registered
    format, on each input kind the model accepts."""
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


# Forecasters: dict inputs exported as named window inputs, every family and decoder.
WINDOWS = DataSpec(
    input_shape=(8, 3), target_kind="continuous", target_names=("a", "b"), horizon=3,
    future_width=2,
)  # fmt: skip
FORECASTERS = [
    ("mlp-forecaster", {}),
    ("tcn", {"channels": [8, 8]}),
    ("lstm-forecaster", {"hidden": 8}),
    ("gru-forecaster", {"hidden": 8, "decoder": "autoregressive"}),
    ("transformer-forecaster", {"d_model": 8, "heads": 2, "layers": 1}),
]


@pytest.mark.slow
@pytest.mark.parametrize(("model_name", "settings"), FORECASTERS)
def test_every_forecaster_exports_with_parity(model_name, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from torchlab.config import Component
    from torchlab.exporters.adapters import forecast_adapter
    from torchlab.exporters.inputs import WindowKind

    torch.manual_seed(0)
    model = MODELS.build(Component(name=model_name, **settings), "model", WINDOWS, 6).eval()
    adapted = forecast_adapter(model, with_future=True)
    kind = WindowKind("series", {0: "batch"}, names=("past", "future"), shapes=((8, 3), (3, 2)))
    for format in FORMATS:
        chosen = exporter(format)
        path = tmp_path / f"{format}{Path(chosen.filename).suffix}"
        chosen.save(adapted, kind.example((8, 3)), kind, path, False)
        result = verify(model_call(model), chosen.load(path), kind, (8, 3), FLOAT)
        assert [c["shape"][0] for c in result["cases"]] == [1, 2, 7]
        assert result["max_abs_error"] <= result["worst_case"]["bound"]


def model_call(model: nn.Module):  # type: ignore[no-untyped-def]
    """The eager forecaster called as the artefact is: positional past and future."""
    return lambda past, future: model({"past": past, "future": future})


@pytest.fixture(scope="module")
def co2_run(tmp_path_factory: pytest.TempPathFactory) -> torchlab.Run:
    overrides = {**FAST, "trainer.max_epochs": 1, "baseline": None}
    return torchlab.train("co2", overrides, output_dir=tmp_path_factory.mktemp("runs"))


@pytest.mark.slow
@pytest.mark.parametrize("format", FORMATS)
def test_forecaster_export_forecasts_like_the_run(format, co2_run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = export(co2_run, format, output=tmp_path / format)
    sidecar = json.loads((path / "export.json").read_text())
    assert sidecar["input"]["inputs"] == [
        {"name": "past", "shape": ["batch", 60, 1], "dtype": "float32", "columns": ["co2"]}
    ]
    forecasting = sidecar["forecasting"]
    assert (forecasting["lookback"], forecasting["horizon"]) == (60, 24)
    assert forecasting["quantiles"] == [0.1, 0.5, 0.9]
    assert sidecar["output"]["shape"] == ["batch", 24, 1, 3]
    tail = co2_run.featurizer.tails[0]
    scaler = tail.scaler("target")
    assert forecasting["scalers"][tail.id]["target"] == scaler.to_dict()
    assert [c["shape"][0] for c in sidecar["verification"]["cases"]] == [1, 2, 7]
    # The run's real last window, through the artefact, unscaled as the sidecar says.
    past = co2_run.featurizer.forecast_inputs()["past"]
    got = exporter(format).load(path / sidecar["file"])(past)
    with torch.inference_mode():
        expected = co2_run.load_model()({"past": past})
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    ppm = scaler.inverse(got[0, :, 0, 1:2].numpy())  # the median, back in ppm
    assert ((ppm > 360) & (ppm < 385)).all()  # CO2 around 2002
    with pytest.raises(ExportError, match="torchlab predict RUN_DIR --horizon N"):
        torchlab.predict(path, [])


@pytest.mark.slow
def test_forecaster_to_torchserve_is_refused(co2_run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ExportError, match="export a forecaster with --format torchscript"):
        export(co2_run, "mar", output=tmp_path / "mar")
    assert not (tmp_path / "mar").exists()


# Recurrent text classifiers: packed sequences, exported as masking over token ids.
TOKENS = DataSpec(
    input_shape=(8,), target_kind="categorical", class_names=("a", "b", "c"), vocab_size=120
)
RNN_TEXT = [
    ("lstm", {"bidirectional": True, "pooling": "max", "layers": 2}),
    ("gru", {"bidirectional": True, "pooling": "last"}),
    ("gru", {"bidirectional": False, "pooling": "mean"}),
]


@pytest.mark.slow
@pytest.mark.parametrize(("model_name", "settings"), RNN_TEXT)
def test_rnn_text_classifier_exports_like_packed_eager(model_name, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from torchlab.config import Component
    from torchlab.exporters.adapters import MaskedRNNText

    torch.manual_seed(0)
    component = Component(name=model_name, embedding_dim=8, hidden=8, **settings)
    model = MODELS.build(component, "model", TOKENS, 3).eval()
    kind = input_kind("text")
    lengths = {c.shape[1] for c in kind.verification_inputs((8,))}
    assert lengths == {8, 4, 2}  # two shorter sequence lengths beside the trained one
    for format in FORMATS:
        chosen = exporter(format)
        path = tmp_path / f"{format}{Path(chosen.filename).suffix}"
        chosen.save(MaskedRNNText(model, 8).eval(), kind.example((8,)), kind, path, False)
        result = verify(model, chosen.load(path), kind, (8,), FLOAT)
        assert result["label_agreement"] == 1.0


@pytest.mark.slow
def test_transformer_text_classifier_exports_up_to_its_length(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The sequence axis goes up to the trained length, which its position table allows."""
    from torchlab.config import Component

    torch.manual_seed(0)
    component = Component(name="transformer", dim=16, heads=2, layers=1)
    model = MODELS.build(component, "model", TOKENS, 3).eval()
    kind = input_kind("text")
    for format in FORMATS:
        chosen = exporter(format)
        path = tmp_path / f"{format}{Path(chosen.filename).suffix}"
        chosen.save(model, kind.example((8,)), kind, path, False)
        result = verify(model, chosen.load(path), kind, (8,), FLOAT)
        assert {c["shape"][1] for c in result["cases"]} == {8, 4, 2}


@pytest.mark.slow
def test_pretrained_encoder_reading_windows_exports(tiny_bert: str, tmp_path: Path) -> None:
    """Texts shorter than, equal to and longer than a window go through one graph."""
    from torchlab.config import Component

    torch.manual_seed(0)
    model = MODELS.build(Component(name="hf-encoder", path=tiny_bert, window=4), "model", TOKENS, 3)
    kind = input_kind("text")
    for format in FORMATS:
        chosen = exporter(format)
        path = tmp_path / f"{format}{Path(chosen.filename).suffix}"
        chosen.save(model.eval(), kind.example((8,)), kind, path, False)
        result = verify(model, chosen.load(path), kind, (8,), FLOAT)
        assert {c["shape"][1] for c in result["cases"]} == {8, 4, 2}
        assert result["label_agreement"] == 1.0


@pytest.mark.slow
def test_bbc_lstm_exports_and_predicts_like_the_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    smoke = {
        **FAST, "trainer.max_epochs": 1, "baseline": None, "data.source.limit": 120,
        "data.source.max_length": 48, "data.batch_size": 16, "data.num_workers": 0,
    }  # fmt: skip
    run = torchlab.train("bbc-lstm", smoke, output_dir=tmp_path / "runs")
    texts = tmp_path / "texts.csv"
    texts.write_text(
        'text\n"Shares fell after the bank cut its forecast."\n"The striker scored twice '
        'in the cup final as the club won."\n"A new phone."\n'
    )
    expected = torchlab.predict(run, [texts])
    for format in ("onnx",):
        path = export(run, format, output=tmp_path / format)
        assert (path / "tokenizer.json").is_file()
        assert_same_predictions(torchlab.predict(path, [texts]), expected, atol=1e-4)
    path = export(run, "torchscript", quantize="dynamic-int8", output=tmp_path / "int8")
    assert json.loads((path / "export.json").read_text())["verification"]["max_abs_error"] > 0


@pytest.mark.slow
def test_decoding_models_are_refused_with_the_serving_alternative(tmp_path) -> None:  # type: ignore[no-untyped-def]
    small = {"data.source.n": 200, "model.hidden_size": 8, "model.embedding_dim": 8}
    dates = torchlab.train(
        "dates", {**FAST, **small, "trainer.max_epochs": 1, "baseline": None},
        output_dir=tmp_path / "runs",
    )  # fmt: skip
    with pytest.raises(
        ExportError, match=r"'seq2seq' run cannot be exported.*torchlab serve RUN_DIR"
    ):
        export(dates, "onnx", output=tmp_path / "dates")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    words = np.random.default_rng(0).choice(["the", "market", "rose", "fell", "bank"], (6, 60))
    for i, doc in enumerate(words):
        (corpus / f"doc{i}.txt").write_text(" ".join(doc))
    overrides = {
        **FAST, "trainer.max_epochs": 1, "baseline": None, "data.source.path": str(corpus),
        "data.source.tokenization": "word", "data.source.block_size": 16, "data.batch_size": 8,
        "model.layers": 1, "model.heads": 2, "model.dim": 16,
    }  # fmt: skip
    gpt = torchlab.train("bbc-gpt", overrides, output_dir=tmp_path / "runs")
    with pytest.raises(ExportError, match=r"'language-model' run cannot be exported.*generates"):
        export(gpt, "torchscript", output=tmp_path / "gpt")
    assert not (tmp_path / "dates").exists() and not (tmp_path / "gpt").exists()


def test_text_verification_ids_stay_inside_a_small_vocabulary() -> None:
    """A word tokenizer fitted on a few reviews has 14 ids; export verification feeds it
    only ids its embedding has (it once drew up to 99 and crashed the export)."""
    from dataclasses import replace

    from torchlab.exporters.inputs import input_kind

    kind = replace(input_kind("text"), vocab_size=14)
    for inputs in kind.verification_inputs((16,)):
        assert int(inputs.max()) < 14 and int(inputs.min()) >= 0
