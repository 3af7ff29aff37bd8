"""``torchlab compare``: several runs side by side, as a terminal table and one HTML page.

Config keys that differ between the runs come first and are highlighted; test metrics get
the best value of each row marked; learning curves of every run are overlaid per metric.
RL runs compare their final evaluation (mean and std of return) and their return curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchlab.errors import RunError
from torchlab.report.analysis import png
from torchlab.report.html import data_uri, environment_for_templates
from torchlab.report.plots import panel_grid
from torchlab.run import Run


@dataclass
class Row:
    key: str
    values: list[Any]
    differs: bool = False
    best: int | None = None  # index of the best run (metrics only)


@dataclass
class Comparison:
    """Runs, their flattened configs and their test metrics, row by row."""

    labels: list[str]
    dirs: list[Path]
    config: list[Row]
    metrics: list[Row]

    def table(self) -> Any:
        """A rich table: differing config keys, then test metrics (best in bold)."""
        from rich.table import Table

        table = Table(title="Run comparison", caption="config rows: only keys that differ")
        table.add_column("", no_wrap=True)
        for label in self.labels:
            table.add_column(label, justify="right", overflow="fold")
        for row in self.config:
            if row.differs:
                table.add_row(row.key, *(str(v) for v in row.values), style="yellow")
        table.add_section()
        for row in self.metrics:
            cells = [
                "–"
                if v is None
                else f"[bold green]{_number(v)}[/]"
                if i == row.best
                else _number(v)
                for i, v in enumerate(row.values)
            ]
            table.add_row(row.key, *cells)
        return table


def _number(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def compare(run_dirs: list[str | Path], output: str | Path | None = None) -> Comparison:
    """Compare completed runs; writes an HTML page to ``output`` when given."""
    if len(run_dirs) < 2:
        raise RunError(f"Compare needs at least two run directories; received {len(run_dirs)}.")
    runs = [Run(d) for d in run_dirs]
    summaries = [run.summary for run in runs]  # a run that did not complete raises here
    kinds = {s.get("kind") == "rl" for s in summaries}
    if len(kinds) > 1:
        rl = next(r.dir for r, s in zip(runs, summaries, strict=True) if s.get("kind") == "rl")
        raise RunError(
            f"'{rl}' is an RL run and others are not: compare RL runs with RL runs and "
            "supervised runs with supervised runs."
        )
    labels = _labels(runs)
    configs = [flatten(run.config.model_dump(mode="json", exclude={"tune"})) for run in runs]
    keys = list(dict.fromkeys(k for c in configs for k in c))
    rows = [Row(k, [c.get(k) for c in configs]) for k in keys]
    for row in rows:
        row.differs = any(v != row.values[0] for v in row.values[1:])
    rows.sort(key=lambda r: not r.differs)  # differences first, otherwise in config order
    comparison = Comparison(labels, [r.dir for r in runs], rows, _metric_rows(summaries))
    if output is not None:
        write_html(comparison, runs, Path(output))
    return comparison


def _labels(runs: list[Run]) -> list[str]:
    names = [run.config.name for run in runs]
    if len(set(names)) == len(names):
        return names
    return [f"{run.config.name}/{run.dir.name}" for run in runs]


def scores(summary: dict[str, Any]) -> dict[str, Any]:
    """The metrics a run is judged by: its test metrics, or an RL run's final evaluation."""
    if summary.get("kind") == "rl":
        evaluation = summary.get("eval") or {}
        return {f"eval/{k}": v for k, v in evaluation.items() if k != "episodes"}
    return summary["test"]


def _metric_rows(summaries: list[dict[str, Any]]) -> list[Row]:
    from torchlab.tasks import higher_is_better

    tests = [scores(s) for s in summaries]
    keys = list(
        dict.fromkeys(k for t in tests for k, v in t.items() if isinstance(v, (int, float)))
    )
    rows = []
    for key in [*keys, "train_seconds", "parameters"]:
        values = [
            t.get(key) if "/" in key else s.get(key) for s, t in zip(summaries, tests, strict=True)
        ]
        finite = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
        best = None
        if "/" in key and finite and not key.endswith("_std"):
            higher = key.rpartition("/")[2] in higher_is_better() | {"return_mean"}
            best = (max if higher else min)(finite, key=lambda iv: iv[1])[0]
        rows.append(Row(key, values, best=best))
    return rows


def curves(runs: list[Run], labels: list[str]) -> bytes:
    """Per-epoch train/val loss and every validation metric, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if all(run.summary.get("kind") == "rl" for run in runs):
        return _return_curves(runs, labels)
    histories = [[r for r in run.history if "train/loss" in r] for run in runs]
    panels = ["train/loss", "val/loss"]
    panels += sorted(
        {k for h in histories for r in h for k in r if k.startswith("val/") and k != "val/loss"}
        - set(panels)
        - {k for h in histories for r in h for k, v in r.items() if not isinstance(v, float)}
    )
    fig, axes = panel_grid(plt, len(panels), cols=3, size=(5, 3.4))
    for ax, panel in zip(axes, panels, strict=True):
        for label, history in zip(labels, histories, strict=True):
            points = [(r["epoch"] + 1, r[panel]) for r in history if panel in r]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", markersize=2, label=label)
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return png(fig)


def _return_curves(runs: list[Run], labels: list[str]) -> bytes:
    """Evaluation and training return of RL runs against environment steps, one line per run."""
    from torchlab.report.analysis import _plt

    plt = _plt()
    panels = ("eval/return", "train/return")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for label, run in zip(labels, runs, strict=True):
            points = [(r["step"], r[panel]) for r in run.history if panel in r and "step" in r]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", markersize=2, label=label)
        ax.set_title(panel)
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize="small")
    return png(fig)


def write_html(comparison: Comparison, runs: list[Run], output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    html = (
        environment_for_templates()
        .get_template("compare.html.j2")
        .render(
            c=comparison,
            curves=data_uri(curves(runs, comparison.labels)),
            rl=all(run.summary.get("kind") == "rl" for run in runs),
        )
    )
    output.write_text(html)
    return output
