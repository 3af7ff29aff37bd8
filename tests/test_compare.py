"""``torchlab compare`` on real iris runs that differ in their learning rate."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import torchlab
from torchlab.errors import RunError
from torchlab.report.compare import compare

QUICK = {"trainer.max_epochs": 2, "trainer.progress": "none"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    root = tmp_path_factory.mktemp("runs")
    return [
        torchlab.train("iris", {**QUICK, "optim.lr": lr}, output_dir=root / str(i))
        for i, lr in enumerate((0.01, 0.05))
    ]


@pytest.mark.e2e  # trains the runs it compares
def test_config_differences_come_first_and_metrics_mark_the_best(
    runs: list[Any], tmp_path: Path
) -> None:
    result = compare([r.dir for r in runs], tmp_path / "cmp.html")
    differing = [row.key for row in result.config if row.differs]
    assert differing == ["optim.lr"]
    assert result.config[0].key == "optim.lr" and result.config[0].values == [0.01, 0.05]
    accuracy = next(r for r in result.metrics if r.key == "test/accuracy")
    values = [run.metrics["test/accuracy"] for run in runs]
    assert accuracy.values == values
    assert values[accuracy.best] == max(values)
    loss = next(r for r in result.metrics if r.key == "test/loss")
    assert loss.values[loss.best] == min(loss.values)  # lower is better for a loss

    html = (tmp_path / "cmp.html").read_text()
    assert html.count('class="diff"') == 1
    assert re.search(r'<tr class="diff"><td>optim\.lr</td><td>0\.01</td><td>0\.05</td>', html)
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) == 1 and images[0].startswith("data:image/png;base64,")


@pytest.mark.slow  # the comparison is tested in-process
def test_compare_cli_prints_a_table_and_writes_the_page(
    runs: list[Any], cli, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    result = cli("compare", str(runs[0].dir), str(runs[1].dir), "-o", "out/cmp.html")
    assert result.returncode == 0, result.stderr
    assert "optim.lr" in result.stdout and "test/accuracy" in result.stdout
    assert (tmp_path / "out" / "cmp.html").is_file()


@pytest.mark.e2e  # CLI processes
def test_compare_needs_two_completed_runs(runs: list[Any], tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RunError, match="at least two run directories"):
        compare([runs[0].dir])
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text((runs[0].dir / "config.yaml").read_text())
    (unfinished / "run.json").write_text('{"status": "running"}')
    with pytest.raises(RunError, match="has not completed"):
        compare([runs[0].dir, unfinished])
    result = cli("compare", str(runs[0].dir), str(tmp_path / "nowhere"))
    assert result.returncode != 0 and "not a torchlab run directory" in result.stderr


@pytest.mark.slow
def test_rl_runs_compare_their_evaluation_and_return_curves(
    runs: list[Any], tmp_path: Path
) -> None:
    tiny = {"trainer.total_steps": 256, "trainer.eval_every": 128, "trainer.eval_episodes": 1,
            "trainer.checkpoint_every": 10_000, "trainer.progress": "none"}  # fmt: skip
    rl = [
        torchlab.train("cartpole-ppo", {**tiny, "seed": seed}, output_dir=tmp_path / str(seed))
        for seed in (0, 1)
    ]
    result = compare([r.dir for r in rl], tmp_path / "cmp.html")
    assert [row.key for row in result.config if row.differs] == ["seed"]
    mean = next(r for r in result.metrics if r.key == "eval/return_mean")
    values = [r.summary["eval"]["return_mean"] for r in rl]
    assert mean.values == values and values[mean.best] == max(values)
    html = (tmp_path / "cmp.html").read_text()
    assert "Final evaluation" in html and "Return curves" in html
    assert re.search(r'<img src="data:image/png;base64,[^"]+"', html)
    with pytest.raises(RunError, match="is an RL run and others are not"):
        compare([runs[0].dir, rl[0].dir])
