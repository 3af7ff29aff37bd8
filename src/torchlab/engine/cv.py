"""Cross-validation and repeated seeds: many runs of one recipe in one parent folder, and
the statistics that say whether the deep model beat its baseline.

    <output_dir>/<name>/cv-<timestamp>/       config.yaml, cv.json, summary.json, report.html
        fold-<repeat>-<k>/                    a complete run, its test part fold k
    <output_dir>/<name>/seeds-<timestamp>/
        seed-<i>/                             a complete run of the same split, seed + i

Each fold is an ordinary run whose config.yaml holds its fold (``data.split.fold``), so it
can be evaluated, reported or resumed on its own; a killed cross-validation resumes by
keeping the completed runs and resuming the others from their last checkpoint.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchlab.config import RunConfig, load_config
from torchlab.errors import ConfigError, RunError
from torchlab.files import write_json, write_text
from torchlab.kinds import TrainRequest
from torchlab.memory import keep_freed_memory
from torchlab.run import Run, read_json

PLAN, CONFIG = "cv.json", "config.yaml"


@dataclass(frozen=True)
class CVResult:
    """A finished cross-validation (or set of seeds).

    Attributes:
        dir: The parent folder.
        runs: The run folder of each fold or seed, in order.
        summary: What ``summary.json`` holds: per test metric, the spread of torchlab's and
            the baseline's scores, their paired differences and the verdict.
        report: The parent's ``report.html``.
    """

    dir: Path
    runs: list[Path]
    summary: dict[str, Any]
    report: Path


def cv(
    recipe: str | Path | None,
    overrides: list[str] | dict[str, Any] = (),
    *,
    folds: int = 5,
    repeats: int = 1,
    group: str | None = None,
    seeds: int | None = None,
    jobs: int = 1,
    output_dir: str | Path | None = None,
    resume: str | Path | None = None,
) -> CVResult:
    """Cross-validate a supervised recipe against its baseline, with the statistics that say
    whether deep learning paid off.

    Every fold is a complete run (its test part the fold, its validation part cut from the
    other folds as ``data.split.val`` says) in ``<output_dir>/<name>/cv-<timestamp>/``;
    that folder's ``summary.json`` and ``report.html`` give per test metric the mean, std
    and 95% interval of torchlab and of the baseline, their paired differences and the
    verdict of the corrected resampled t-test (Nadeau & Bengio, 2003). A forecasting
    recipe is cross-validated by a rolling-origin backtest of ``folds`` origins.

    With ``jobs`` above 1 the runs train in that many processes of ``cores // jobs``
    threads each; call it under ``if __name__ == "__main__":`` in a script.

    Args:
        recipe: A built-in recipe name or a YAML path; optional with ``resume``.
        overrides: Dotted overrides, ``["optim.lr=1e-3"]`` or ``{"optim.lr": 1e-3}``.
        folds: k of k-fold (stratified for classification).
        repeats: Times the k-fold is repeated, each with its own shuffle.
        group: A column of the source's table whose values never span two folds.
        seeds: Instead of folds, train this many seeds (seed, seed + 1, ...) of the
            recipe's own split and compare each with the baseline.
        jobs: Runs trained at once, each in its own process.
        output_dir: Where the parent folder goes (default: the config's ``output_dir``).
        resume: A parent folder to finish: completed runs are kept, interrupted ones
            resumed from their last checkpoint.
    """
    keep_freed_memory()
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1; received {jobs}.")
    if resume is not None:
        return finish(Path(resume), jobs)
    if recipe is None:
        raise ConfigError("Name a recipe or YAML file to cross-validate, or give --resume DIR.")
    config = load_config(recipe, overrides)
    if not isinstance(config, RunConfig):
        raise ConfigError(
            f"Cross-validation needs a supervised recipe; '{recipe}' trains an agent, whose "
            "runs `torchlab train` repeats with different seeds."
        )
    plan = make_plan(config, folds, repeats, group, seeds)
    if config.task.name == "forecasting":
        return cross_validate_forecaster(config, recipe, overrides, plan, output_dir)
    parent = new_parent(Path(output_dir or config.output_dir) / config.name, plan["kind"])
    write_text(parent / CONFIG, config.to_yaml())
    write_json(parent / PLAN, plan)
    return finish(parent, jobs)


def make_plan(
    config: RunConfig, folds: int, repeats: int, group: str | None, seeds: int | None
) -> dict[str, Any]:
    """What the parent folder runs, checked before any run starts (saved as cv.json)."""
    if seeds is not None:
        if seeds < 2:
            raise ConfigError(f"--seeds must be at least 2 to compare runs; received {seeds}.")
        if group is not None or repeats != 1:
            raise ConfigError("--seeds repeats one split; leave out --group and --repeats.")
        split_seed = config.seed if config.data.split.seed is None else config.data.split.seed
        return {"kind": "seeds", "seeds": seeds, "seed": config.seed, "split_seed": split_seed}
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2; received {folds}.")
    if repeats < 1:
        raise ConfigError(f"--repeats must be at least 1; received {repeats}.")
    if config.data.split.fold is not None:
        raise ConfigError(
            "The config sets data.split.fold already (one fold's run); cross-validate the "
            "recipe without it."
        )
    return {"kind": "cv", "folds": folds, "repeats": repeats, "group": group}


def units(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each run of a plan: its folder name and the overrides that make it that run."""
    if plan["kind"] == "seeds":
        return {
            f"seed-{i}": {"seed": plan["seed"] + i, "data.split.seed": plan["split_seed"]}
            for i in range(plan["seeds"])
        }
    return {
        f"fold-{r}-{k}": {
            "data.split.fold": {
                "folds": plan["folds"],
                "index": k,
                "repeat": r,
                "group": plan["group"],
            }
        }
        for r in range(plan["repeats"])
        for k in range(plan["folds"])
    }


def new_parent(root: Path, kind: str) -> Path:
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S")
    for attempt in range(1000):
        path = root / (f"{kind}-{stamp}" if attempt == 0 else f"{kind}-{stamp}-{attempt + 1}")
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            continue
        return path
    raise RunError(f"Cannot create a new folder under '{root}'; clean up old ones there.")


def finish(parent: Path, jobs: int) -> CVResult:
    """Run every fold or seed of ``parent`` that has not completed, then summarise."""
    if not (parent / PLAN).is_file():
        raise RunError(
            f"'{parent}' is not a cross-validation folder (it has no {PLAN}); give the "
            "folder that `torchlab cv` printed."
        )
    plan = read_json(parent / PLAN)
    if plan["kind"] == "backtest":
        raise RunError(
            f"'{parent}' is a backtest, whose folds depend on each other's order; run "
            "`torchlab cv` on the recipe again instead of resuming it."
        )
    todo = units(plan)
    jobs = min(jobs, len(todo))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # Each process gets its share of the cores, so that J runs do not oversubscribe them.
    settings = (
        {"trainer.threads": max(1, (cores or 1) // jobs), "trainer.progress": "none"}
        if jobs > 1
        else {}
    )
    work = [(str(parent), name, overrides, settings) for name, overrides in todo.items()]
    if jobs == 1:
        dirs = [train_unit(*item) for item in work]
    else:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # no forked torch or CUDA state
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            dirs = list(pool.map(train_unit, *zip(*work, strict=True)))
    return summarise(parent, plan, [Path(d) for d in dirs])


def train_unit(parent: str, name: str, overrides: dict[str, Any], settings: dict[str, Any]) -> str:
    """Train one fold or seed, resume it if it was interrupted, keep it if it completed."""
    from torchlab.engine.fit import train

    folder = Path(parent) / name
    if not folder.exists():
        config = Path(parent) / CONFIG
        return str(train(TrainRequest(config, {**overrides, **settings}, run_dir=folder)).dir)
    if Run(folder).status != "completed":
        train(TrainRequest(None, settings, resume=folder))
    return str(folder)


def cross_validate_forecaster(
    config: RunConfig,
    recipe: str | Path,
    overrides: Any,
    plan: dict[str, Any],
    output_dir: str | Path | None,
) -> CVResult:
    """A forecaster is cross-validated by a rolling-origin backtest (test parts in time
    order, each trained on the past alone), reported like the folds of other data."""
    from torchlab.engine.forecasting import backtest

    if plan["kind"] != "cv" or plan["repeats"] != 1 or plan["group"] is not None:
        raise ConfigError(
            "A forecasting recipe is cross-validated by a rolling-origin backtest, which has "
            "one order: leave out --seeds, --repeats and --group."
        )
    result = backtest(recipe, overrides, folds=plan["folds"], output_dir=output_dir)
    plan = {**plan, "kind": "backtest"}
    write_text(result.dir / CONFIG, config.to_yaml())
    write_json(result.dir / PLAN, plan)
    names = [f"fold-{f['fold']}" for f in result.folds]  # fold 0 tests on the latest data
    return summarise(result.dir, plan, [Path(f["run"]) for f in result.folds], names)


def summarise(
    parent: Path, plan: dict[str, Any], dirs: list[Path], names: list[str] | None = None
) -> CVResult:
    """Write the parent's summary.json and report.html from its completed runs (named by
    their folders unless ``names`` are given)."""
    from torchlab.report.cv import write_cv_report
    from torchlab.report.stats import corrected_t_test, spread, verdict
    from torchlab.tasks import higher_is_better

    names = names or [path.name for path in dirs]
    runs = [run_record(path, parent, name) for path, name in zip(dirs, names, strict=True)]
    # Runs of one split share a test set: only training randomness varies, no correction.
    ratio = 0.0 if plan["kind"] == "seeds" else test_train_ratio(runs)
    higher = higher_is_better()
    metrics: dict[str, Any] = {}
    for name in shared_metrics([r["test"] for r in runs]):
        ours = [r["test"][name] for r in runs]
        theirs = [(r["baseline"] or {}).get(name) for r in runs]
        entry: dict[str, Any] = {
            "higher_is_better": name.rpartition("/")[2] in higher,
            "torchlab": spread(ours).to_dict(),
            "baseline": None,
            "difference": None,
            "verdict": None,
        }
        if all(isinstance(v, (int, float)) for v in theirs):
            test = corrected_t_test([a - b for a, b in zip(ours, theirs, strict=True)], ratio)
            entry |= {
                "baseline": spread(theirs).to_dict(),
                "difference": test.to_dict(),
                "verdict": verdict(test, entry["higher_is_better"]),
            }
        metrics[name] = entry
    baselines = {(r["baseline"] or {}).get("name") for r in runs} - {None}
    summary = {
        "recipe": runs[0]["recipe"],
        **plan,
        "baseline": ", ".join(sorted(baselines)) or None,
        "test_train_ratio": ratio,
        "metrics": metrics,
        "runs": runs,
    }
    write_json(parent / "summary.json", summary)
    result = CVResult(parent, dirs, summary, write_cv_report(parent, summary))
    track_cv(result)
    return result


def track_cv(result: CVResult) -> None:
    """When tracking is asked for, the cv as a parent MLflow run: each fold's or seed's run
    (pushed by its own training) nested under it, and the spread and verdict per metric."""
    from torchlab.config import load_config
    from torchlab.tracking import settings_for

    config_path = result.dir / CONFIG
    settings = settings_for(load_config(config_path)) if config_path.is_file() else None
    if settings is None:
        return
    from torchlab.tracking.study import ParentRun

    summary = result.summary
    tags = {"torchlab.recipe": summary["recipe"], "torchlab.kind": summary["kind"]}
    parent = ParentRun(settings, result.dir, f"{summary['kind']} {summary['recipe']}", tags)
    for run in summary["runs"]:
        parent.nest(Path(run["dir"]), "complete", {"torchlab.fold": run["name"]})
    metrics, verdicts = {}, {}
    for name, entry in summary["metrics"].items():
        metrics[f"{name}/mean"] = entry["torchlab"]["mean"]
        if entry["baseline"] is not None:
            metrics[f"{name}/baseline_mean"] = entry["baseline"]["mean"]
            metrics[f"{name}/p_value"] = entry["difference"]["p_value"]
            verdicts[f"verdict.{name}"] = entry["verdict"]
    parent.finish(metrics, verdicts)


def run_record(path: Path, parent: Path, name: str) -> dict[str, Any]:
    run = Run(path)
    summary, data = run.summary, read_json(path / "data.json")
    return {
        "name": name,
        "dir": str(path),
        "folder": os.path.relpath(path, parent),  # for links from the parent's report
        "recipe": summary["recipe"],
        "test": scores(summary["test"]),
        "baseline": summary.get("baseline") and scores(summary["baseline"]),
        "sizes": data.get("sizes", {}),
    }


def scores(values: dict[str, Any]) -> dict[str, Any]:
    """The numbers of a summary to float32's 7 digits, so that a deep model's float32 score
    and a baseline's float64 one that are equal differ by 0, not by rounding noise that a
    t-test would take for a consistent difference; other entries (a name) as they are."""
    return {
        k: float(f"{v:.7g}") if isinstance(v, (int, float)) else v
        for k, v in values.items()
        if isinstance(v, (int, float, str))
    }


def shared_metrics(tests: list[dict[str, Any]]) -> list[str]:
    """The test metrics every run has, in the first run's order."""
    return [name for name in tests[0] if all(name in t for t in tests)]


def test_train_ratio(runs: list[dict[str, Any]]) -> float:
    """Mean n_test / n_train over the runs, n_train counting every sample not held out for
    the test (the baseline fits train and val; the deep model selects its epoch on val)."""
    ratios = []
    for run in runs:
        sizes = run["sizes"]
        if not all(isinstance(sizes.get(k), int) for k in ("train", "val", "test")):
            raise RunError(
                f"Run '{run['dir']}' does not record its split sizes in data.json, which the "
                "corrected t-test needs."
            )
        ratios.append(sizes["test"] / (sizes["train"] + sizes["val"]))
    return sum(ratios) / len(ratios)
