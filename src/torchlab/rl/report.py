"""``report.html`` and ``MODEL_CARD.md`` of a reinforcement-learning run.

Everything comes from the files the RL loop leaves in the run directory (``summary.json``,
``metrics.jsonl``, ``config.yaml``, ``run.json``, ``environment.json``, ``evaluation.gif``),
each read by name and skipped when absent, so the report needs no rebuilt agent. The page
and the card extend the supervised ones (``layout.html.j2``, ``MODEL_CARD.md.j2``).
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from torchlab.files import write_text
from torchlab.report.analysis import _plt, png
from torchlab.report.html import data_uri, environment_for_templates, warn_on_failure
from torchlab.report.plots import panel_grid

SMOOTHING = 0.6  # weight of the past in the exponential moving average of training returns


def write_run_report(run: Any) -> None:
    """What the end of an RL run calls: a report that cannot be written warns, never fails."""
    warn_on_failure(run.dir, lambda: write_rl_reports(run.dir))


def write_rl_reports(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``MODEL_CARD.md`` of a completed RL run; returns both paths."""
    from torchlab.run import Run

    run = Run(run_dir)
    context = rl_context(run)
    templates = environment_for_templates()
    html = run.dir / "report.html"
    write_text(html, templates.get_template("rl_report.html.j2").render(**context))
    card = run.dir / "MODEL_CARD.md"
    write_text(card, templates.get_template("rl_MODEL_CARD.md.j2").render(**context))
    return html, card


def rl_context(run: Any) -> dict[str, Any]:
    """Everything the RL templates show, from the run directory's files."""
    from torchlab import __version__

    summary = run.summary  # a clear error for a run that did not complete
    config_yaml = _text(run.dir / "config.yaml")
    config = yaml.safe_load(config_yaml) or {}
    history = run.history
    info = _json(run.dir / "run.json")
    results, baseline, verdict = results_table(summary)
    curves = [("Return against environment steps", return_curves(history, summary))]
    losses = training_curves(history)
    if losses is not None:
        curves.append(("Training losses and learning rate against environment steps", losses))
    gif = run.dir / str(summary.get("gif") or "evaluation.gif")
    env = config.get("env") or {}
    agent = config.get("agent") or {}
    return {
        "name": config.get("name", run.dir.name),
        "run_dir": str(run.dir),
        "status": info.get("status", "completed"),
        "created": info.get("created", ""),
        "version": __version__,
        "summary": summary,
        "results": results,
        "baseline": baseline,
        "verdict": verdict,
        "curves": [(title, data_uri(figure)) for title, figure in curves],
        "evaluations": evaluations(history),
        "gif": "data:image/gif;base64," + base64.b64encode(gif.read_bytes()).decode("ascii")
        if gif.is_file()
        else None,
        "env_facts": env_facts(env, (config.get("trainer") or {}).get("target_return")),
        "agent_facts": [
            ("agent", agent.get("name", summary.get("agent", "?"))),
            *((k, v) for k, v in agent.items() if k != "name"),
            ("policy parameters", f"{summary.get('parameters', 0):,}"),
        ],
        "agent_name": agent.get("name", summary.get("agent", "?")),
        "agent_settings": ", ".join(f"{k}={v}" for k, v in agent.items() if k != "name")
        or "defaults",
        "env_id": env.get("id", summary.get("env", "?")),
        "num_envs": env.get("num_envs", 1),
        "seed": config.get("seed", 0),
        "config_yaml": config_yaml,
        "timings": timings(summary, info),
        "environment": _json(run.dir / "environment.json"),
    }


def results_table(summary: dict[str, Any]) -> tuple[list[dict[str, Any]], dict | None, str]:
    """The final evaluation beside the random policy's on the same seeds, and a verdict."""
    evaluation = summary.get("eval") or {}
    baseline = summary.get("baseline") or None
    rows = []
    for key, label in (("return_mean", "mean return"), ("return_std", "return std")):
        value = evaluation.get(key)
        if not _finite(value):
            continue
        other = baseline.get(key) if baseline else None
        verdict = ""
        if key == "return_mean" and _finite(other) and value != other:
            verdict = "better" if value > other else "worse"
        rows.append({"metric": label, "value": value, "baseline": other, "verdict": verdict})
    text = ""
    if baseline and rows and rows[0]["verdict"]:
        text = (
            f"The agent's mean return {'beats' if rows[0]['verdict'] == 'better' else 'is below'}"
            f" the {baseline['name']}'s by {abs(rows[0]['value'] - rows[0]['baseline']):.2f}."
        )
    return rows, baseline, text


def evaluations(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per periodic evaluation in ``metrics.jsonl``: step, mean and std of return."""
    return [
        {"step": r.get("step"), "mean": r["eval/return"], "std": r.get("eval/return_std")}
        for r in history
        if _finite(r.get("eval/return"))
    ]


def smoothed(values: list[float], weight: float = SMOOTHING) -> np.ndarray:
    """Exponential moving average, debiased at the start as TensorBoard's smoothing is."""
    out, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**i))
    return np.asarray(out)


def return_curves(history: list[dict[str, Any]], summary: dict[str, Any]) -> bytes:
    """Training returns (raw and smoothed), evaluation mean ± std, the random policy's level."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4.2))
    train = [(r["step"], r["train/return"]) for r in history if _finite(r.get("train/return"))]
    if train:
        steps, values = zip(*train, strict=True)
        ax.plot(steps, values, color="tab:blue", alpha=0.35, lw=1, marker="o", ms=3,
                label="training episodes (mean per log line)")  # fmt: skip
        ax.plot(steps, smoothed(list(values)), color="tab:blue", lw=2,
                label=f"training, smoothed (EMA {SMOOTHING})")  # fmt: skip
    rows = evaluations(history)
    if rows:
        steps = np.array([r["step"] for r in rows], dtype=float)
        mean = np.array([r["mean"] for r in rows], dtype=float)
        std = np.array([r["std"] if _finite(r["std"]) else 0.0 for r in rows], dtype=float)
        ax.plot(steps, mean, color="tab:green", marker="o", ms=4, label="evaluation mean")
        ax.fill_between(steps, mean - std, mean + std, color="tab:green", alpha=0.2,
                        label="evaluation ± std")  # fmt: skip
    baseline = summary.get("baseline") or {}
    if _finite(baseline.get("return_mean")):
        ax.axhline(baseline["return_mean"], color="tab:red", ls="--", lw=1,
                   label=f"{baseline.get('name', 'baseline')}")  # fmt: skip
    if _finite(summary.get("best_step")) and summary["best_step"] >= 0:
        ax.axvline(summary["best_step"], color="0.5", ls=":", lw=1, label="best weights")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return png(fig)


def training_curves(history: list[dict[str, Any]]) -> bytes | None:
    """One panel per logged training quantity other than returns (losses, entropy, lr)."""
    skip = {"train/return", "train/episodes"}
    keys = sorted({k for r in history for k in r if k.startswith("train/") and k not in skip})
    if not keys:
        return None
    plt = _plt()
    fig, axes = panel_grid(plt, len(keys), cols=4, size=(3.6, 2.8))
    for ax, key in zip(axes, keys, strict=True):
        points = [(r["step"], r[key]) for r in history if _finite(r.get(key))]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", markersize=2)
        ax.set_title(key.removeprefix("train/"), fontsize=10)
        ax.set_xlabel("steps", fontsize=8)
        ax.grid(alpha=0.3)
    return png(fig)


def env_facts(env: dict[str, Any], target: Any) -> list[tuple[str, Any]]:
    """The config's environment settings, with the spaces and episode limit gymnasium gives."""
    facts: list[tuple[str, Any]] = [(k, v) for k, v in env.items() if v not in ({}, None)]
    try:
        from torchlab.rl.common.env import episode_limit, make_env
        from torchlab.rl.config import EnvConfig

        made = make_env(EnvConfig.model_validate(env))
        try:
            facts += [
                ("observation space", str(made.observation_space)),
                ("action space", str(made.action_space)),
                ("max episode steps", episode_limit(made)),
            ]
        finally:
            made.close()
    except Exception as exc:  # the report still renders with what the config says
        facts.append(("spaces", f"not available ({type(exc).__name__})"))
    if target is not None:
        facts.append(("target return (stops training)", target))
    return [(k, v) for k, v in facts if v is not None]


def timings(summary: dict[str, Any], info: dict[str, Any]) -> list[tuple[str, Any]]:
    """Training time (evaluation excluded), throughput, and when the target was reached."""
    seconds = summary.get("train_seconds") or 0.0
    steps = summary.get("steps") or 0
    rows: list[tuple[str, Any]] = [
        ("training time (evaluation excluded)", f"{seconds:.1f} s"),
        ("environment steps", f"{steps:,}"),
        ("training episodes", f"{summary.get('episodes', 0):,}"),
    ]
    if seconds > 0:
        rows.append(("steps per second", f"{steps / seconds:,.0f}"))
    if summary.get("solved_step") is not None:
        rows.append(
            (
                "target return reached",
                f"step {summary['solved_step']:,} after {summary.get('solved_seconds') or 0:.1f} s",
            )
        )
    rows.append(("policy parameters", f"{summary.get('parameters', 0):,}"))
    if info.get("created") and info.get("updated"):
        rows.append(("started / finished", f"{info['created']} / {info['updated']}"))
    return rows


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _text(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}
