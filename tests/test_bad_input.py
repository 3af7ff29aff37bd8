"""Every user mistake is one line and exit 2: bad settings, broken artefacts, a table with two
columns of one name, and folders that --overwrite must not delete."""

from __future__ import annotations

import shutil

import pytest
from sklearn.datasets import load_iris

import torchlab
from torchlab.api import export
from torchlab.cli import main


def fails(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run the CLI in this process; it must exit 2 with one ``error:`` line."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    err = capsys.readouterr().err.strip()
    assert exited.value.code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.dropout=2", "'model.dropout' is a probability, from 0 up to but not including 1"),
        ("model.hidden=[-3]", "'model.hidden' must hold positive sizes; received [-3]"),
        ("seed=-1", "'seed' has a bad value: input should be greater than or equal to 0"),
        ("seed=99999999999999999999999", "'seed' has a bad value: input should be less than"),
        ("seed=true", "'seed' has a bad value: input should be a valid integer"),
    ],
)
def test_settings_out_of_range(capsys, tmp_path, override, message) -> None:  # type: ignore[no-untyped-def]
    err = fails(capsys, "train", "iris", override, "--output-dir", str(tmp_path))
    assert err.startswith("error: Config key") and message in err
    assert not (tmp_path / "iris").exists()


def test_a_port_out_of_range_is_refused(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exited:
        main(["serve", ".", "--port", "99999"])
    assert exited.value.code == 2
    assert "less than or equal to 65535" in capsys.readouterr().err


def test_a_table_with_two_columns_of_one_name(capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    table = tmp_path / "twice.csv"
    table.write_text("age,income,age,bought\n" + "31,2.5,40,yes\n42,3.1,50,no\n" * 10)
    err = fails(
        capsys, "train", "iris", "data.source.name=csv", f"data.source.path={table}",
        "data.source.target=bought", "--output-dir", str(tmp_path),
    )  # fmt: skip
    assert f"'{table}' has two columns named 'age' (columns 1 and 3)" in err


def test_a_folder_that_is_neither_a_run_nor_an_export(capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "model").mkdir()  # e.g. an export folder whose export.json was lost
    (tmp_path / "rows.csv").write_text("a,b\n1,2\n")
    for verb in (["predict", str(tmp_path / "model"), str(tmp_path / "rows.csv")],
                 ["serve", str(tmp_path / "model")]):  # fmt: skip
        err = fails(capsys, *verb)
        assert "is neither a run directory (no config.yaml) nor an export directory" in err


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory: pytest.TempPathFactory) -> torchlab.Run:
    overrides = {"trainer.max_epochs": 1, "trainer.progress": "none"}
    return torchlab.train("iris", overrides, output_dir=tmp_path_factory.mktemp("runs"))


@pytest.mark.parametrize("format", ["torchscript", "onnx"])
def test_a_damaged_artefact_is_named(capsys, iris_run, tmp_path, format) -> None:  # type: ignore[no-untyped-def]
    folder = export(iris_run, format, output=tmp_path / format)
    artefact = next(p for p in folder.iterdir() if p.name.startswith("model."))
    artefact.write_bytes(artefact.read_bytes()[:300])
    rows = tmp_path / "rows.csv"
    load_iris(as_frame=True).frame.drop(columns="target").head(3).to_csv(rows, index=False)
    err = fails(capsys, "predict", str(folder), str(rows))
    assert f"error: '{artefact}' cannot be loaded as {format}" in err
    assert "export the run again" in err


def test_overwrite_replaces_only_an_export(capsys, iris_run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    precious = tmp_path / "my-notes"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    err = fails(capsys, "export", str(iris_run.dir), "-o", str(precious), "--overwrite")
    assert "is not a torchlab export (no export.json)" in err
    assert (precious / "thesis.tex").read_text() == "years of work"
    first = export(iris_run, "onnx", output=tmp_path / "onnx")
    assert export(iris_run, "onnx", output=first, overwrite=True) == first
    shutil.rmtree(first)
