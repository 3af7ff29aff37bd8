"""Cross-validation: folds as test parts, the statistics over folds and seeds, and `torchlab
cv` end to end (including a kill -9 in the middle and a resume)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris

from torchlab.data.base import Fold, SourceContext
from torchlab.data.splits import split_indices
from torchlab.errors import DataError
from torchlab.report.stats import (
    BETTER,
    UNDECIDED,
    WORSE,
    corrected_t_test,
    spread,
    verdict,
)


def fold_parts(
    n: int, folds: int, group: str | None = None, **kwargs: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The train, val and test parts of each fold of one k-fold."""
    return [
        split_indices(n, val=0.15, test=0.2, seed=0, fold=Fold(folds, k, group=group), **kwargs)
        for k in range(folds)
    ]


def test_folds_are_disjoint_and_cover_the_data() -> None:
    y = load_iris().target
    parts = fold_parts(len(y), 5, stratify=y)
    tests = [test for _, _, test in parts]
    assert sorted(np.concatenate(tests).tolist()) == list(range(len(y)))  # each sample once
    for train, val, test in parts:
        assert len(test) == 30
        # val is a share of all samples, as without folds (scikit-learn rounds a cut up)
        assert len(val) == math.ceil(0.15 * len(y))
        everything = np.concatenate([train, val, test])
        assert len(set(everything.tolist())) == len(everything) == len(y)


def test_stratified_folds_keep_the_class_proportions() -> None:
    y = load_breast_cancer().target  # 212 malignant, 357 benign
    share = y.mean()
    for train, val, test in fold_parts(len(y), 5, stratify=y):
        assert abs(y[test].sum() - share * len(test)) <= 1  # within one sample
        assert abs(y[val].mean() - share) < 0.02
        assert abs(y[train].mean() - share) < 0.02


def test_grouped_folds_keep_each_group_in_one_part() -> None:
    y = load_breast_cancer().target
    groups = np.random.default_rng(0).integers(0, 60, len(y))  # e.g. 60 patients
    seen: set[int] = set()
    for train, val, test in fold_parts(len(y), 4, "patient", stratify=y, groups=groups):
        in_test, in_val, in_train = (set(groups[p].tolist()) for p in (test, val, train))
        assert not in_test & (in_val | in_train) and not in_val & in_train
        assert not in_test & seen  # no group spans two test folds
        seen |= in_test
    assert seen == set(groups.tolist())


def test_repeats_shuffle_differently_and_each_is_reproducible() -> None:
    y = load_iris().target
    first = split_indices(150, val=0.1, test=0.2, seed=0, stratify=y, fold=Fold(5, 0, repeat=0))
    again = split_indices(150, val=0.1, test=0.2, seed=0, stratify=y, fold=Fold(5, 0, repeat=0))
    other = split_indices(150, val=0.1, test=0.2, seed=0, stratify=y, fold=Fold(5, 0, repeat=1))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[2], other[2])


def test_grouped_folds_read_the_column_of_a_users_csv(tmp_path: Path) -> None:
    from torchlab.registry import DATASETS

    frame = load_iris(as_frame=True).frame
    frame["patient"] = [f"p{i % 25}" for i in range(len(frame))]
    frame.to_csv(tmp_path / "flowers.csv", index=False)
    source = {"name": "csv", "path": str(tmp_path / "flowers.csv"), "target": "target",
              "drop": ["patient"]}  # fmt: skip
    from torchlab.config import Component

    sizes = []
    for k in range(3):
        context = SourceContext(0.1, 0.2, True, 0, "categorical", fold=Fold(3, k, group="patient"))
        bundle = DATASETS.build(Component.model_validate(source), "data.source", context)
        sizes.append(bundle.summary["sizes"]["test"])
    assert sum(sizes) == 150 and all(size % 6 == 0 for size in sizes)  # whole patients of 6 rows
    context = SourceContext(0.1, 0.2, True, 0, "categorical", fold=Fold(3, 0, group="ward"))
    with pytest.raises(DataError, match=r"'ward' named in data\.split\.fold\.group"):
        DATASETS.build(Component.model_validate(source), "data.source", context)


def test_spread_matches_a_hand_computed_interval() -> None:
    s = spread([1.0, 2.0, 3.0, 4.0])
    # std = sqrt(5/3); t(0.975, 3 dof) = 3.182446305284263
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert s.mean == 2.5 and s.std == pytest.approx(math.sqrt(5 / 3))
    assert (s.low, s.high) == pytest.approx((2.5 - half, 2.5 + half))


def test_corrected_t_test_matches_a_hand_computed_value() -> None:
    d = [0.02, 0.01, 0.03, 0.00, 0.04]  # mean 0.02, sample variance 0.00025
    test = corrected_t_test(d, test_train_ratio=0.25)  # 5 folds: n_test / n_train = 1/4
    t = 0.02 / math.sqrt((1 / 5 + 1 / 4) * 0.00025)  # Nadeau & Bengio: 1/J + n2/n1
    # Student's t with 4 dof in closed form: F(t) = 1/2 + 3/4 x (1 - x^2/3), x = t/sqrt(t^2+4)
    x = t / math.sqrt(t * t + 4)
    p = 2 * (1 - (0.5 + 0.75 * x * (1 - x * x / 3)))
    assert test.t == pytest.approx(t) == pytest.approx(1.885618083)
    assert test.dof == 4 and test.correction == pytest.approx(0.45)
    assert test.p_value == pytest.approx(p) == pytest.approx(0.1324189222)
    half = 2.7764451051977987 * math.sqrt(0.45 * 0.00025)  # t(0.975, 4 dof) x standard error
    assert (test.low, test.high) == pytest.approx((0.02 - half, 0.02 + half))
    # Without the correction the same folds look convincing: that is what it guards against.
    plain = corrected_t_test(d, test_train_ratio=0.0)
    assert plain.t == pytest.approx(0.02 / math.sqrt(0.00025 / 5)) and plain.p_value < 0.05


def test_verdict_flips_with_the_differences_and_the_metrics_direction() -> None:
    gains = corrected_t_test([0.05, 0.06, 0.04, 0.05, 0.055], 0.25)
    losses = corrected_t_test([-0.05, -0.06, -0.04, -0.05, -0.055], 0.25)
    noise = corrected_t_test([0.03, -0.02, 0.01, -0.03, 0.02], 0.25)
    assert verdict(gains, higher_is_better=True) == BETTER  # e.g. accuracy up
    assert verdict(losses, higher_is_better=True) == WORSE
    assert verdict(gains, higher_is_better=False) == WORSE  # e.g. a loss up
    assert verdict(losses, higher_is_better=False) == BETTER
    assert verdict(noise, higher_is_better=True) == UNDECIDED
    assert verdict(corrected_t_test([0.0, 0.0, 0.0], 0.5), True) == UNDECIDED  # all ties
    assert verdict(corrected_t_test([0.01, 0.01, 0.01], 0.5), True) == BETTER  # no doubt


@pytest.mark.slow  # about 15 s: three runs and their reports
def test_cv_cli_writes_the_parent_summary_and_report(cli, tmp_path: Path) -> None:
    done = cli("cv", "iris", "--folds", "3", "trainer.max_epochs=2", "trainer.progress=none")
    assert done.returncode == 0, done.stderr
    assert "verdict" in done.stdout and "test/accuracy" in done.stdout
    (parent,) = (tmp_path / "runs" / "iris").glob("cv-*")
    summary = json.loads((parent / "summary.json").read_text())
    assert [r["name"] for r in summary["runs"]] == ["fold-0-0", "fold-0-1", "fold-0-2"]
    accuracy = summary["metrics"]["test/accuracy"]
    assert accuracy["higher_is_better"] and len(accuracy["torchlab"]["values"]) == 3
    assert accuracy["verdict"] in (BETTER, WORSE, UNDECIDED)
    assert summary["test_train_ratio"] == pytest.approx(50 / 100)  # 3 folds of 150 flowers
    assert accuracy["difference"]["correction"] == pytest.approx(1 / 3 + 1 / 2)
    assert summary["metrics"]["test/loss"]["baseline"] is None  # the baseline has no loss
    tests = []
    for run in summary["runs"]:
        fold = json.loads((Path(run["dir"]) / "data.json").read_text())["sizes"]
        assert fold == {"train": 77, "val": 23, "test": 50}
        tests.append((Path(run["dir"]) / "config.yaml").read_text())
    assert "index: 2" in tests[2]  # each fold's config.yaml says which fold it tests on
    report = (parent / "report.html").read_text()
    assert "Nadeau" in report and "fold-0-2/report.html" in report


def test_seeds_vary_the_model_on_one_split(tmp_path: Path) -> None:
    import torchlab

    result = torchlab.cv(
        "iris",
        {"trainer.max_epochs": 1, "trainer.progress": "none", "model.hidden": [8]},
        seeds=2,
        output_dir=tmp_path,
    )
    assert [p.name for p in result.runs] == ["seed-0", "seed-1"]
    configs = [(p / "config.yaml").read_text() for p in result.runs]
    assert "seed: 0\n" in configs[0] and "seed: 1\n" in configs[1]
    sizes = [r["sizes"] for r in result.summary["runs"]]
    assert sizes[0] == sizes[1]  # the split's own seed keeps the test set
    assert result.summary["test_train_ratio"] == 0.0  # one test set: no resampling correction
    assert result.summary["metrics"]["test/accuracy"]["difference"]["dof"] == 1
    assert json.loads((result.dir / "summary.json").read_text())["kind"] == "seeds"
    assert "seed-1/report.html" in result.report.read_text()


def test_cv_refuses_a_config_that_fixes_its_fold(tmp_path: Path) -> None:
    import torchlab
    from torchlab.errors import ConfigError

    fixed = {"data.split.fold": {"folds": 3, "index": 0}}
    with pytest.raises(ConfigError, match=r"sets data\.split\.fold already"):
        torchlab.cv("iris", fixed, folds=3, output_dir=tmp_path)
    with pytest.raises(ConfigError, match="--seeds repeats one split"):
        torchlab.cv("iris", seeds=2, group="target", output_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # refused before any folder was made


@pytest.mark.slow
def test_a_killed_cv_resumes_its_folds_exactly(tmp_path: Path) -> None:
    """kill -9 while the second fold trains; --resume keeps the first and resumes the second
    from its checkpoint, ending with the weights an uninterrupted run of that fold gets."""
    settings = ["trainer.max_epochs=60", "trainer.early_stopping=null",
                "trainer.deterministic=true", "trainer.progress=none"]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    command = [sys.executable, "-m", "torchlab", "cv", "iris", "--folds", "2", *settings]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    second = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        # step-*: a whole checkpoint (one being written is a hidden .step-* folder)
        found = list((tmp_path / "runs" / "iris").glob("cv-*/fold-0-1/checkpoints/step-*"))
        if found:
            second = found[0].parents[1]
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert second is not None, "the second fold never wrote a checkpoint"
    parent = second.parent
    first_summary = (parent / "fold-0-0" / "summary.json").stat().st_mtime_ns
    assert json.loads((second / "run.json").read_text())["status"] == "running"

    resumed = subprocess.run(
        [sys.executable, "-m", "torchlab", "cv", "--resume", str(parent)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert (parent / "fold-0-0" / "summary.json").stat().st_mtime_ns == first_summary
    status = json.loads((second / "run.json").read_text())
    assert status["status"] == "completed" and status["resumed_from"]
    assert len(json.loads((parent / "summary.json").read_text())["runs"]) == 2

    import torchlab
    from torchlab.training.checkpoint import load_weights

    again = torchlab.train(second / "config.yaml", output_dir=tmp_path / "again")
    ours, theirs = (
        load_weights(second / "model.safetensors"),
        load_weights(again.dir / "model.safetensors"),
    )
    assert ours.keys() == theirs.keys()
    assert all(np.array_equal(ours[k].numpy(), theirs[k].numpy()) for k in ours)


@pytest.mark.slow  # two spawned processes importing torch
def test_jobs_train_folds_in_processes_that_share_the_cores(tmp_path: Path) -> None:
    import torchlab

    quick = {"trainer.max_epochs": 1, "model.hidden": [8]}
    result = torchlab.cv("iris", quick, folds=2, jobs=2, output_dir=tmp_path)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    for run in result.runs:
        assert json.loads((run / "run.json").read_text())["status"] == "completed"
        assert f"threads: {max(1, (cores or 1) // 2)}\n" in (run / "config.yaml").read_text()
    assert len(result.summary["metrics"]["test/accuracy"]["torchlab"]["values"]) == 2


def test_a_forecaster_is_cross_validated_by_a_rolling_origin_backtest(tmp_path: Path) -> None:
    import torchlab
    from torchlab.errors import ConfigError, RunError

    settings = {
        "trainer.max_epochs": 2, "trainer.progress": "none", "baseline.methods": ["naive"],
        "task.intervals": {"coverage": 0.8},
    }  # fmt: skip
    result = torchlab.cv("co2", settings, folds=2, output_dir=tmp_path)
    summary = result.summary
    assert summary["kind"] == "backtest"
    assert [r["name"] for r in summary["runs"]] == ["fold-1", "fold-0"]  # oldest origin first
    tests = [
        json.loads((Path(r["dir"]) / "data.json").read_text())["test"] for r in summary["runs"]
    ]
    assert tests[0] < tests[1]  # test parts in time order
    mase = summary["metrics"]["test/mase"]
    assert not mase["higher_is_better"] and mase["verdict"] in (BETTER, WORSE, UNDECIDED)
    assert mase["baseline"] is not None  # the naive forecast on the same windows
    assert len(summary["metrics"]["test/interval_coverage"]["torchlab"]["values"]) == 2
    with pytest.raises(RunError, match="is a backtest"):
        torchlab.cv(None, resume=result.dir)
    with pytest.raises(ConfigError, match="rolling-origin backtest, which has one order"):
        torchlab.cv("co2", settings, folds=2, repeats=2, output_dir=tmp_path)
