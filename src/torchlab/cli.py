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


@app.callback()
def options(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
) -> None:
    state["debug"] = debug


@app.command()
def recipes() -> None:
    """List the built-in recipes."""
    from torchlab.config import recipe_names, recipe_summary

    names = recipe_names()
    width = max(map(len, names))
    for name in names:
        typer.echo(f"{name:<{width}}  {recipe_summary(name)}")


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
) -> None:
    """Train a recipe or YAML config."""
    from torchlab import api

    args = list(args or [])
    recipe = args.pop(0) if args and "=" not in args[0] else None
    run = api.train(recipe, args, resume=resume, output_dir=output_dir)
    print_summary(run.summary, run.dir)


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
) -> None:
    """Evaluate a run's best weights on one split."""
    from torchlab import api

    metrics = api.evaluate(run_dir, split)
    print_metrics(metrics, title=f"{run_dir} ({split})")


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    inputs: Annotated[
        list[Path], typer.Argument(help="A CSV/Parquet file (tabular) or image files/folders.")
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="CSV to write (default: print).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
) -> None:
    """Predict with a trained run."""
    from torchlab import api

    frame = api.predict(run_dir, inputs, output=output, overwrite=overwrite)
    if output is None:
        typer.echo(frame.to_csv(index=False), nl=False)
    else:
        typer.echo(f"Wrote {len(frame)} predictions to {output}")


def print_metrics(metrics: dict[str, Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
    Console().print(table)


def print_summary(summary: dict[str, Any], run_dir: Path) -> None:
    """The final table: torchlab's test metrics beside the classical baseline's."""
    from rich.console import Console
    from rich.table import Table

    baseline = summary.get("baseline") or {}
    table = Table(
        title=f"{summary['recipe']}: test metrics",
        caption=f"best epoch {summary['best_epoch'] + 1} of {summary['epochs']}, "
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
    console.print(f"Run directory: {run_dir}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``torchlab`` command and ``python -m torchlab``."""
    from torchlab.errors import TorchlabError

    try:
        app(args=argv, standalone_mode=False)
    except TorchlabError as exc:
        if state["debug"]:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted; resume with: torchlab train --resume RUN_DIR", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        raise
