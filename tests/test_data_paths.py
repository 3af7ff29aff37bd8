"""A run stays usable from any folder: it records its data by absolute path and fingerprint,
and says so when that data changed before it is evaluated against it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from sklearn.datasets import load_iris

import torchlab
from torchlab.data.fingerprint import changes, fingerprints

FAST = {"trainer.max_epochs": 1, "trainer.progress": "none"}


@pytest.mark.e2e  # trains, then evaluates and predicts elsewhere
def test_a_run_reads_its_data_from_anywhere(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir(), elsewhere.mkdir()
    load_iris(as_frame=True).frame.to_csv(project / "flowers.csv", index=False)
    monkeypatch.chdir(project)
    source = {"data.source": {"name": "csv", "path": "flowers.csv", "target": "target"}}
    run = torchlab.train("iris", {**source, **FAST})
    saved = yaml.safe_load((run.dir / "config.yaml").read_text())["data"]["source"]["path"]
    assert saved == str(project / "flowers.csv")
    files = json.loads((run.dir / "data.json").read_text())["files"]
    assert files[saved]["bytes"] == (project / "flowers.csv").stat().st_size

    monkeypatch.chdir(elsewhere)
    first = torchlab.evaluate(run.dir)
    assert first["test/accuracy"] == run.metrics["test/accuracy"]
    with (project / "flowers.csv").open("a") as table:
        table.write("5.0,3.0,1.5,0.2,0\n")
    with pytest.warns(UserWarning, match=r"flowers\.csv' changed since the run was trained"):
        torchlab.evaluate(run.dir)


def test_fingerprints_notice_changed_and_missing_folders(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "cats").mkdir(parents=True)
    (folder / "cats" / "a.jpg").write_bytes(b"x" * 10)
    recorded = fingerprints([str(folder), "digits"])  # a source's own name is not a path
    assert list(recorded) == [str(folder)] and changes(recorded) == []
    (folder / "cats" / "b.jpg").write_bytes(b"y")
    assert changes(recorded) == [
        f"'{folder}' changed since the run was trained (1 -> 2 files, 10 -> 11 bytes)"
    ]
    (folder / "cats" / "b.jpg").unlink()
    (folder / "cats" / "a.jpg").unlink()
    (folder / "cats").rmdir()
    folder.rmdir()
    assert changes(recorded) == [f"'{folder}' no longer exists"]
