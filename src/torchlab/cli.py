"""Command line: argument parsing only; every verb calls the public API.

Errors a user can fix are printed as one line and exit non-zero (2 for usage and config
errors) without a traceback, unless ``--debug`` is given.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="torchlab: from raw data to a trained, evaluated model.",
)
state = {"debug": False}
TrustCode = Annotated[
    bool,
    typer.Option(
        "--trust-code",
        help="Let this run or export folder run code it names or holds (modules it did not "
        "record, pickles); only for folders you trust. See SECURITY.md.",
    ),
]


@app.callback()
def options(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
) -> None:
    state["debug"] = debug
    from torchlab.notices import show_on_console

    show_on_console(debug)


@app.command()
def recipes() -> None:
    """List the built-in recipes."""
    from torchlab.config import recipe_names, recipe_summary

    names = recipe_names()
    width = max(map(len, names))
    for name in names:
        typer.echo(f"{name:<{width}}  {recipe_summary(name)}")


@app.command()
def show(
    args: Annotated[
        list[str],
        typer.Argument(help="RECIPE_OR_YAML then dotted overrides.", metavar="RECIPE_OR_YAML"),
    ],
) -> None:
    """Print the resolved config with every default, ready to copy into a file and edit."""
    from torchlab.config import show as resolved

    typer.echo(resolved(args[0], args[1:]), nl=False)


@app.command(context_settings={"allow_extra_args": False})
def train(
    args: Annotated[
        list[str] | None,
        typer.Argument(
            help="RECIPE_OR_YAML then dotted overrides, e.g. digits optim.lr=1e-3 trainer.max_epochs=5."
        ),
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue this run directory from its last checkpoint.")
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option(help="Where new run directories go (default: runs).")
    ] = None,
    trust_code: TrustCode = False,
    seeds: Annotated[
        int | None,
        typer.Option(
            min=2,
            help="Train this many seeds of the recipe's split and compare each with the "
            "baseline (mean, std, 95% interval, paired t-test), as `torchlab cv` does folds.",
        ),
    ] = None,
) -> None:
    """Train a recipe or YAML config."""
    args = list(args or [])
    recipe = args.pop(0) if args and "=" not in args[0] else None
    if recipe is not None and resume is None:
        check_before_import(recipe, args, data=True)

    from torchlab import api
    from torchlab.distributed import world_from_env

    if seeds is not None:
        if resume is not None:
            from torchlab.errors import ConfigError

            raise ConfigError(
                "--seeds with --resume: resume seeds with `torchlab cv --resume DIR`."
            )
        print_cv(api.cv(recipe, args, seeds=seeds, output_dir=output_dir))
        return
    run = api.train(recipe, args, resume=resume, output_dir=output_dir, trust_code=trust_code)
    if world_from_env().is_main:  # under torchrun, rank 0 speaks for the job
        print_summary(run.summary, run.dir)


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    episodes: Annotated[
        int | None, typer.Option(help="RL runs: deterministic episodes to average.", min=1)
    ] = None,
    trust_code: TrustCode = False,
) -> None:
    """Evaluate a run's best weights on one split (RL runs: over --episodes episodes)."""
    check_folder_before_import(run_dir, trust_code)
    from torchlab import api

    metrics = api.evaluate(run_dir, split, episodes=episodes, trust_code=trust_code)
    print_metrics(
        metrics, title=f"{split if episodes is None else 'episodes'} metrics of {run_dir}"
    )


@app.command()
def predict(
    run_dir: Annotated[
        Path, typer.Argument(help="A run directory, or an export directory (torchlab export).")
    ],
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="A CSV/Parquet file (tabular) or image files/folders; with --horizon, an "
            "optional file of known-future covariates."
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="CSV to write (default: print); a .parquet file is written a chunk at a time, "
            "for inputs of any size, and resumes when run again.",
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
    horizon: Annotated[
        int | None,
        typer.Option(help="Forecasting runs: steps to forecast beyond the data's end.", min=1),
    ] = None,
    chunk_rows: Annotated[
        int | None,
        typer.Option(
            "--chunk-rows",
            min=1,
            help="Rows (or images) per chunk of a .parquet output (default: 16384 rows, 256 "
            "images).",
        ),
    ] = None,
    trust_code: TrustCode = False,
    on_error: Annotated[
        str,
        typer.Option(
            "--on-error",
            help="An image file that cannot be read, or an empty text: fail (stop, naming it) "
            "or skip (its row gets the reason in an error column).",
        ),
    ] = "fail",
    id_column: Annotated[
        str | None,
        typer.Option(
            "--id-column",
            help="A column of the input CSV/Parquet files whose values name the rows in the "
            "output's id column (default: file:row, rows counted from 0).",
        ),
    ] = None,
) -> None:
    """Predict with a trained run or an exported model (forecasting runs: --horizon N)."""
    check_folder_before_import(run_dir, trust_code)
    from torchlab import api

    if not inputs and horizon is None:
        raise typer.BadParameter("give input files, or --horizon N for a forecasting run")
    if output is not None and output.suffix.lower() in (".parquet", ".pq") and horizon is None:
        done = api.batch_predict(
            run_dir,
            inputs or [],
            output,
            chunk_rows=chunk_rows,
            overwrite=overwrite,
            on_error=on_error,
            id_column=id_column,
            trust_code=trust_code,
        )
        typer.echo(batch_line(done))
        return
    if chunk_rows is not None:
        raise typer.BadParameter("--chunk-rows applies to a Parquet output (-o OUT.parquet)")
    frame = api.predict(
        run_dir,
        inputs or [],
        output=output,
        overwrite=overwrite,
        horizon=horizon,
        trust_code=trust_code,
        on_error=on_error,
        id_column=id_column,
    )
    if output is None:
        typer.echo(frame.to_csv(index=False), nl=False)
    else:
        typer.echo(f"Wrote {len(frame)} predictions to {output}")


def batch_line(done: Any) -> str:
    """The line a Parquet predict ends with: rows, where, and rows per second."""
    rate = f"{done.rows:,} predicted in {done.seconds:.1f} s, {done.rows_per_second:,.0f} rows/s"
    resumed = f"; {done.resumed} of {done.chunks} chunks resumed" if done.resumed else ""
    if done.written is None:  # a torchrun rank other than 0
        return f"Predicted this rank's chunks of {done.output} ({rate}{resumed})"
    return f"Wrote {done.written:,} predictions to {done.output} ({rate}{resumed})"


@app.command()
def explain(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    inputs: Annotated[
        list[Path],
        typer.Argument(help="What torchlab predict reads: a CSV/Parquet file, texts or images."),
    ],
    method: Annotated[
        str,
        typer.Option(help="integrated-gradients, or occlusion (tables and images)."),
    ] = "integrated-gradients",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Folder to write to (default: RUN_DIR/explanations)."),
    ] = None,
    trust_code: TrustCode = False,
) -> None:
    """Attribute a run's predictions to the inputs' columns, tokens or pixels (Captum)."""
    check_folder_before_import(run_dir, trust_code)
    from torchlab import api

    result = api.explain(run_dir, inputs, method=method, output=output, trust_code=trust_code)
    if result.importance is not None:
        typer.echo(result.importance.to_string(index=False))
    for note in result.notes:
        typer.echo(note)
    listed = ", ".join(path.name for path in result.files[:5])
    more = f" and {len(result.files) - 5} more" if len(result.files) > 5 else ""
    typer.echo(f"Explained {len(result.ids)} inputs in {result.directory}: {listed}{more}")


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    format: Annotated[
        str, typer.Option("--format", "-f", help="torchscript, onnx, exported-program or mar.")
    ] = "onnx",
    quantize: Annotated[
        str | None, typer.Option(help="dynamic-int8: int8 weights for Linear/LSTM layers.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Export directory (default: RUN_DIR/exports/FORMAT)."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing export directory.")] = False,
    trust_code: TrustCode = False,
) -> None:
    """Export a run's model, verified against the eager model, with a sidecar export.json."""
    import json

    check_folder_before_import(run_dir, trust_code)
    from torchlab import api

    path = api.export(
        run_dir,
        format,
        quantize=quantize,
        output=output,
        overwrite=overwrite,
        trust_code=trust_code,
    )
    check = json.loads((path / "export.json").read_text())["verification"]
    worst = max(check["cases"], key=lambda case: case["max_abs_error"])
    typer.echo(
        f"Exported to {path}: verified against the eager model on {len(check['cases'])} input "
        f"shapes, max abs error {worst['max_abs_error']:.3g} where {worst['bound']:.3g} is "
        f"allowed (atol {check['tolerance']['atol']:g} + rtol {check['tolerance']['rtol']:g} "
        "x largest output)"
    )


@app.command()
def serve(
    path: Annotated[Path, typer.Argument(help="A run directory or an export directory.")],
    host: Annotated[
        str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    max_batch: Annotated[int, typer.Option(help="Most rows per model call; 1: no batching.")] = 32,
    max_wait_ms: Annotated[float, typer.Option(help="How long a batch waits to fill.")] = 5.0,
    queue_size: Annotated[int, typer.Option(help="Most waiting requests (503 beyond).")] = 1024,
    timeout: Annotated[float, typer.Option(help="Per-request time limit in s (504).")] = 10.0,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body (413).")] = 8.0,
    max_pixels: Annotated[int, typer.Option(help="Most pixels in one image (422).")] = 16_000_000,
    max_request_pixels: Annotated[
        int, typer.Option(help="Most pixels in all the images of one request (413).")
    ] = 64_000_000,
    max_inflight_pixels: Annotated[
        int, typer.Option(help="Most pixels decoded at once over all requests (503, retry).")
    ] = 128_000_000,
    header_timeout: Annotated[
        float, typer.Option(help="Time in s for a request's headers to arrive (408).")
    ] = 10.0,
    body_timeout: Annotated[
        float, typer.Option(help="Time in s for a request's body to arrive (408).")
    ] = 30.0,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="TORCHLAB_API_KEY", help="Require header X-API-Key with this value."),
    ] = None,
    access_log: Annotated[bool, typer.Option(help="Log one line per request.")] = False,
    trust_code: TrustCode = False,
) -> None:
    """Serve predictions over HTTP with dynamic batching (POST /predict, /docs for the API)."""
    check_folder_before_import(path, trust_code)
    from torchlab.serve import ServeSettings
    from torchlab.serve import serve as run_server

    settings = ServeSettings(
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        queue_size=queue_size,
        timeout_s=timeout,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        max_pixels=max_pixels,
        max_request_pixels=max_request_pixels,
        max_inflight_pixels=max_inflight_pixels,
        header_timeout_s=header_timeout,
        body_timeout_s=body_timeout,
        api_key=api_key,
    )
    run_server(
        path,
        host=host,
        port=port,
        settings=settings,
        access_log=access_log,
        trust_code=trust_code,
    )


@app.command()
def tune(
    args: Annotated[
        list[str],
        typer.Argument(
            help="CONFIG (a YAML with a tune: section, or a recipe) then dotted overrides."
        ),
    ],
    trials: Annotated[
        int | None, typer.Option(help="Total trials of the study (default: tune.trials).")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Default: SQLite in the study folder (one worker). 'journal' or a database URL "
            "(postgresql://user@host/db) for several workers, each started with this command."
        ),
    ] = None,
    study_dir: Annotated[
        Path | None, typer.Option(help="The study folder (default: studies/NAME).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Minutes after which no new trial starts.")
    ] = None,
) -> None:
    """Search hyperparameters with Optuna; writes the best config as a ready-to-run recipe."""
    recipe, *overrides = args
    check_before_import(recipe, overrides)
    from torchlab.tune import tune as run_study

    result = run_study(
        recipe,
        overrides,
        trials=trials,
        storage=storage,
        study_dir=study_dir,
        timeout_minutes=timeout,
    )
    counts = ", ".join(f"{n} {state}" for state, n in sorted(result.counts.items()))
    typer.echo(f"Study '{result.study_name}' in {result.study_dir}: {counts}")
    if result.best_config is None:
        typer.echo("No trial completed, so there is no best config; see trials.csv for errors.")
        return
    typer.echo(f"Best {result.metric} = {result.best_value:.6g} with:")
    for key, value in result.best_params.items():
        typer.echo(f"  {key} = {value}")
    typer.echo(f"Best config: {result.best_config} (train it: torchlab train {result.best_config})")


@app.command("lr-find")
def lr_find(
    args: Annotated[list[str], typer.Argument(help="RECIPE_OR_YAML then dotted overrides.")],
    output_dir: Annotated[
        Path, typer.Option(help="Where lr_finder.png and lr_finder.json go.")
    ] = Path("."),
    start_lr: Annotated[float, typer.Option(help="Smallest rate of the sweep.")] = 1e-7,
    end_lr: Annotated[float, typer.Option(help="Largest rate of the sweep.")] = 10.0,
    steps: Annotated[int, typer.Option(help="Optimizer steps of the sweep.")] = 100,
) -> None:
    """Learning-rate range test: sweep, plot, suggest (optim.lr: auto does this before training)."""
    recipe, *overrides = args
    check_before_import(recipe, overrides)
    from torchlab.tune import lr_find as find

    result = find(
        recipe, overrides, output_dir=output_dir, start_lr=start_lr, end_lr=end_lr, num_steps=steps
    )
    stop = "stopped at divergence" if result.diverged else "reached end_lr"
    typer.echo(
        f"Suggested learning rate: {result.suggestion:.3g} (lowest smoothed loss at "
        f"{result.min_loss_lr:.3g}; sweep of {len(result.lrs)} steps {stop})"
    )
    typer.echo(f"Plot: {output_dir / 'lr_finder.png'}")


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Two or more run directories.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML page to write.")] = Path(
        "comparison.html"
    ),
) -> None:
    """Compare runs: config differences, metrics and overlaid learning curves."""
    from rich.console import Console

    from torchlab.report.compare import compare as compare_runs

    comparison = compare_runs(run_dirs, output)
    Console().print(comparison.table())
    typer.echo(f"Comparison page: {output}")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A completed run directory.")],
    trust_code: TrustCode = False,
) -> None:
    """Rebuild a run's report.html and MODEL_CARD.md from its directory."""
    check_folder_before_import(run_dir, trust_code)
    from torchlab import api

    typer.echo(f"Report: {api.report(run_dir, trust_code)}")


@app.command()
def track(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI (default: the run's, then env).")
    ] = None,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment name.")] = None,
) -> None:
    """Push a run to MLflow: what the server lacks of its params, metrics, files and model."""
    from torchlab import api

    run_id = api.track(run_dir, uri=uri, experiment=experiment)
    typer.echo(f"MLflow run: {run_id}")


@app.command()
def profile(
    args: Annotated[list[str], typer.Argument(help="RECIPE_OR_YAML then dotted overrides.")],
    steps: Annotated[int, typer.Option(min=1, help="Training steps to profile.")] = 20,
    output_dir: Annotated[Path | None, typer.Option(help="Where the run folder goes.")] = None,
) -> None:
    """Profile a few training steps: time per phase, syncs, costliest ops, a Chrome trace."""
    check_before_import(args[0], args[1:])
    from torchlab import api

    report = api.profile(args[0], args[1:], steps=steps, output_dir=output_dir)
    typer.echo(report.summary())
    typer.echo(report.top_ops)
    typer.echo(f"Chrome trace: {report.trace}")


@app.command("validate-data")
def validate_data(
    args: Annotated[list[str], typer.Argument(help="RECIPE_OR_YAML then dotted overrides.")],
) -> None:
    """Read every image of a config's data once; list each bad file (exit 2 if any)."""
    check_before_import(args[0], args[1:])
    from torchlab.data.vision.inspect import validate_data as validate
    from torchlab.errors import DataError

    report = validate(args[0], args[1:])
    if not report.ok:
        raise DataError(
            f"{report}\nFix or remove these files, or set data.source.on_error=skip to train without them."
        )
    typer.echo(str(report))


@app.command()
def shard(
    folder: Annotated[
        Path, typer.Argument(help="An image folder: one folder per class, or images/ and masks/.")
    ],
    out: Annotated[Path, typer.Argument(help="Where the shards and dataset.json go.")],
    shard_size: Annotated[
        str, typer.Option(help="Bytes per shard at most, e.g. 1GB or 256MB.")
    ] = "1GB",
) -> None:
    """Write an image folder as WebDataset tar shards for the image-shards source."""
    from torchlab.data.stream.shards import write_shards

    index = write_shards(folder, out, shard_size)
    typer.echo(f"Wrote {index['samples']:,} samples in {len(index['shards'])} shard(s) to {out}")


@app.command("show-batch")
def show_batch(
    args: Annotated[list[str], typer.Argument(help="RECIPE_OR_YAML then dotted overrides.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="PNG to write (default: NAME-batch.png).")
    ] = None,
    count: Annotated[int, typer.Option(min=1, help="Samples to show.")] = 16,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing PNG.")] = False,
) -> None:
    """Save a PNG grid of augmented training samples with their labels."""
    check_before_import(args[0], args[1:])
    from torchlab.data.vision.inspect import show_batch as show

    path = show(args[0], output, overrides=args[1:], count=count, overwrite=overwrite)
    typer.echo(f"Wrote {path}")


@app.command()
def backtest(
    args: Annotated[
        list[str], typer.Argument(help="A forecasting RECIPE_OR_YAML then dotted overrides.")
    ],
    folds: Annotated[
        int, typer.Option(min=1, help="Successive test origins (rolling origin).")
    ] = 3,
    output_dir: Annotated[Path | None, typer.Option(help="Where the backtest folder goes.")] = None,
) -> None:
    """Rolling-origin backtest: train and test at --folds origins, model vs classical methods."""
    check_before_import(args[0], args[1:])
    from rich.console import Console
    from rich.table import Table

    from torchlab import api

    result = api.backtest(args[0], args[1:], folds=folds, output_dir=output_dir)
    table = Table(title=f"Mean test metrics over {folds} folds")
    columns = [k for k in result.table[0] if k != "forecaster"]
    table.add_column("forecaster")
    for column in columns:
        table.add_column(column, justify="right")
    for row in result.table:
        table.add_row(row["forecaster"], *(f"{row[c]:.4g}" for c in columns))
    Console().print(table)
    typer.echo(f"Backtest folder: {result.dir}")


@app.command()
def cv(
    args: Annotated[
        list[str] | None,
        typer.Argument(
            help="RECIPE_OR_YAML then dotted overrides, e.g. iris trainer.max_epochs=20."
        ),
    ] = None,
    folds: Annotated[int, typer.Option(min=2, help="k of k-fold (stratified for classes).")] = 5,
    repeats: Annotated[
        int, typer.Option(min=1, help="Repeat the k-fold with this many shuffles.")
    ] = 1,
    group: Annotated[
        str | None,
        typer.Option(help="A column of the data's table whose values never span two folds."),
    ] = None,
    jobs: Annotated[
        int, typer.Option(min=1, help="Runs trained at once, each with cores / jobs threads.")
    ] = 1,
    resume: Annotated[
        Path | None,
        typer.Option(help="Finish this cv folder: keep completed folds, resume the others."),
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option(help="Where the cv folder goes (default: runs).")
    ] = None,
) -> None:
    """Cross-validate a recipe against its baseline: is deep learning better, worse, or
    undecided at 95%? (corrected resampled t-test over the folds)."""
    args = list(args or [])
    recipe = args.pop(0) if args and "=" not in args[0] else None
    if recipe is not None and resume is None:
        check_before_import(recipe, args, data=True)
    from torchlab import api

    result = api.cv(
        recipe, args, folds=folds, repeats=repeats, group=group, jobs=jobs,
        output_dir=output_dir, resume=resume,
    )  # fmt: skip
    print_cv(result)


def print_cv(result: Any) -> None:
    """Per test metric: torchlab and the baseline as mean ± std, and the verdict."""
    from rich.console import Console
    from rich.table import Table

    s = result.summary
    unit = "seeds" if s["kind"] == "seeds" else "folds"
    table = Table(title=f"{s['recipe']}: test metrics over {len(s['runs'])} {unit}")
    for column in ("metric", "torchlab", f"baseline: {s['baseline'] or '-'}", "p", "verdict"):
        table.add_column(column, justify="left" if column in ("metric", "verdict") else "right")
    for name, m in s["metrics"].items():
        ours, theirs, test = m["torchlab"], m["baseline"], m["difference"]
        table.add_row(
            name,
            f"{ours['mean']:.4f} ± {ours['std']:.4f}",
            f"{theirs['mean']:.4f} ± {theirs['std']:.4f}" if theirs else "-",
            f"{test['p_value']:.3g}" if test else "-",
            m["verdict"] or "-",
        )
    console = Console()
    console.print(table)
    console.print(f"Report: {shown_path(result.report)}", soft_wrap=True, markup=False)


def check_before_import(recipe: str, overrides: list[str], data: bool = False) -> None:
    """Check a config before the verb imports torch and the registered leaves, so a mistake
    is reported at once, in the words of the full check that follows (see torchlab.precheck)."""
    from torchlab.precheck import check_before_run

    check_before_run(recipe, overrides, data=data)


def check_folder_before_import(path: Path, trust_code: bool) -> None:
    """Check a run folder's config and the code it names, or an export folder's files, before
    the verb imports torch and the leaves: a hostile or damaged folder is answered at once."""
    if (path / "config.yaml").is_file():
        from torchlab.run import Run

        Run(path, trust_code=trust_code).check_early()
    elif (path / "export.json").is_file():
        from torchlab.exporters.sidecar import check_export_early

        check_export_early(path, trust_code)


def print_metrics(metrics: dict[str, Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
    console = Console()
    console.print(title, soft_wrap=True, markup=False)  # a path is never wrapped mid-way
    console.print(table)


def print_summary(summary: dict[str, Any], run_dir: Path) -> None:
    """The final table: torchlab's test metrics beside the classical baseline's."""
    from rich.console import Console
    from rich.table import Table

    if summary.get("kind") == "rl":  # an RL run: return of the agent beside a random policy
        summary = {
            **summary,
            "test": {f"eval/{k}": v for k, v in summary["eval"].items()},
            "baseline": {"name": "random policy"}
            | {f"eval/{k}": v for k, v in summary["baseline"].items() if k != "name"},
            "caption": f"best evaluation at step {summary['best_step']} of {summary['steps']}, "
            f"trained in {summary['train_seconds']:.1f} s",
        }

    baseline = summary.get("baseline") or {}
    table = Table(
        title=f"{summary['recipe']}: test metrics",
        caption=summary.get("caption")
        or f"best epoch {summary['best_epoch']} of {summary['epochs']}, "
        f"trained in {summary['train_seconds']:.1f} s",
    )
    table.add_column("metric")
    table.add_column("torchlab", justify="right")
    if baseline:
        table.add_column(f"baseline: {baseline['name']}", justify="right")
    for key, value in summary["test"].items():
        if isinstance(value, float):
            other = baseline.get(key)
            table.add_row(
                key,
                f"{value:.4f}",
                *([f"{other:.4f}" if other is not None else "-"] if baseline else []),
            )
    console = Console()
    console.print(table)
    if not baseline and summary.get("baseline_note"):
        console.print(summary["baseline_note"], soft_wrap=True, markup=False)
    skipped = summary.get("skipped_files", [])
    if skipped:
        console.print(
            f"Skipped {len(skipped)} unreadable file(s); summary.json and report.html list them.",
            soft_wrap=True,
            markup=False,
        )
    console.print(f"Run directory: {shown_path(run_dir)}", soft_wrap=True, markup=False)


def shown_path(path: Path) -> str:
    """A path as the user would type it: relative when below the working directory."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``torchlab`` command and ``python -m torchlab``."""
    from torchlab.errors import TorchlabError

    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args:  # accepted after the verb too: `torchlab train x --debug`
        args.remove("--debug")
        args.insert(0, "--debug")
    try:
        app(args=args, standalone_mode=False)
    except TorchlabError as exc:
        if state["debug"]:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted; resume with: torchlab train --resume RUN_DIR", err=True)
        sys.exit(130)
    except typer.Exit as exc:  # --help and the like, in non-standalone mode
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # usage errors: an unknown option, a bad value
        typer.echo(usage_error(exc), err=True)
        sys.exit(getattr(exc, "exit_code", 2))


def usage_error(exc: Exception) -> str:
    """A usage error as one line in the form of every other error, with where to read more."""
    text = getattr(exc, "format_message", lambda: str(exc))()
    text = " ".join(text.split()).rstrip(".")
    ctx = getattr(exc, "ctx", None)
    more = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
    return f"error: {text}{more}."
