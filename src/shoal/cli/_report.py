"""Report commands: ``shoal report``, ``shoal compare`` and ``shoal compare-optimizers``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from shoal.cli._main import StorageOpt, app, console

StudyOpt = Annotated[Optional[str], typer.Option(help="Study name (needed when the storage has several).")]
OutOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="The HTML file to write.")]
NoHtmlOpt = Annotated[bool, typer.Option("--no-html", help="Terminal tables only; write no HTML file.")]


@app.command()
def report(
    storage: StorageOpt = None,
    study: StudyOpt = None,
    output: OutOpt = None,
    color_by: Annotated[Optional[str], typer.Option(
        help="Hyperparameter colouring the learning curves (default: the most important one).")] = None,
    top: Annotated[int, typer.Option(help="How many best configurations to list.")] = 10,
    max_curves: Annotated[int, typer.Option(help="At most this many learning curves drawn.")] = 200,
    no_html: NoHtmlOpt = False,
) -> None:
    """Analyse a stored study: history, learning curves, importance, best configs, over-/underfitting,
    stages, timing, the Pareto front of several objectives and the trials over a limit; as tables here
    and as one offline HTML file."""
    from shoal._errors import ConfigError
    from shoal.report import load_report, write_html
    from shoal.report._html import _plotly
    from shoal.report._terminal import print_report

    if top < 1 or max_curves < 1:
        raise ConfigError(f"--top and --max-curves must be at least 1. Got {top} and {max_curves} instead.")
    if not no_html:
        _plotly()  # a missing plotly is reported before the study is read
    data = load_report(storage, study, color_by=color_by, top=top, max_curves=max_curves)
    if color_by is not None and data.curves.color_by is None and data.curves.total:
        console.print(f"[yellow]No trial has the parameter {color_by!r}; curves are not coloured.[/]")
    print_report(data, console)
    if not no_html:
        path = write_html(data, output or Path(f"report-{data.study_name}.html"))
        console.print(f"report written to [bold]{path}[/]")


def _compare(param: str, values: Optional[str], data: str, seeds: int, budget: int, epochs: int, default_lr: float,
             target_loss: Optional[float], storage: Optional[str], study: Optional[str], seed: int,
             search_engine: str, output: Optional[Path], no_html: bool, quiet: bool) -> None:
    from shoal.report._compare import run_comparison
    from shoal.report._compare_view import print_comparison, write_comparison
    from shoal.report._html import _plotly
    from shoal.space import parse_value

    if not no_html:
        _plotly()
    chosen = [parse_value(v.strip()) for v in values.split(",") if v.strip()] if values else None
    result = run_comparison(param, data=data, values=chosen, seeds=seeds, budget=budget, epochs=epochs,
                            default_lr=default_lr, storage=storage, study=study, seed=seed, target_loss=target_loss,
                            search_engine=search_engine, progress=not quiet, console=console)
    print_comparison(result, console)
    if not no_html:
        path = write_comparison(result, output or Path(f"{result.study_name.replace('/', '-')}.html"))
        console.print(f"comparison written to [bold]{path}[/]; study [bold]{result.study_name}[/] in "
                      f"{storage or 'shoal.db'} (run the same command again to reuse it).")


DataOpt = Annotated[str, typer.Option(help="digits, mnist:FOLDER, fashion-mnist:FOLDER, x.csv or x.npz.")]
SeedsOpt = Annotated[int, typer.Option(help="Runs per setting, each with its own seed.")]
BudgetOpt = Annotated[int, typer.Option(help="Learning-rate search trials per value (0: default lr only).")]
EpochsOpt = Annotated[int, typer.Option(help="Epochs of every run.")]
DefaultLrOpt = Annotated[float, typer.Option(help="The shared learning rate every value also runs with.")]
TargetOpt = Annotated[Optional[float], typer.Option(
    help="Validation loss that counts as converged (default: the median of the settings' best mean losses).")]
CmpStudyOpt = Annotated[Optional[str], typer.Option(help="Comparison study name (default compare-<param>-<data>).")]
SeedOpt = Annotated[int, typer.Option(help="Study seed (split, searches, run seeds).")]
SearchEngineOpt = Annotated[str, typer.Option(
    help="Engine of the learning-rate searches: population (batched) or single (one model at a time).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


@app.command()
def compare(
    param: Annotated[str, typer.Option(help="The categorical hyperparameter compared: optimizer, activation, init, "
                                       "batch_norm, batch_size, lr_decay or shape.")] = "optimizer",
    values: Annotated[Optional[str], typer.Option(help="Values compared, comma separated (default: all).")] = None,
    data: DataOpt = "digits",
    seeds: SeedsOpt = 3,
    budget: BudgetOpt = 8,
    epochs: EpochsOpt = 10,
    default_lr: DefaultLrOpt = 0.01,
    target_loss: TargetOpt = None,
    storage: StorageOpt = None,
    study: CmpStudyOpt = None,
    seed: SeedOpt = 0,
    search_engine: SearchEngineOpt = "population",
    output: OutOpt = None,
    no_html: NoHtmlOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Compare the values of one hyperparameter on the same MLP and data: each at its tuned and a
    shared default learning rate, over seeds; loss curves, convergence speed, accuracy intervals."""
    _compare(param, values, data, seeds, budget, epochs, default_lr, target_loss, storage, study, seed,
             search_engine, output, no_html, quiet)


@app.command("compare-optimizers")
def compare_optimizers(
    values: Annotated[Optional[str], typer.Option(help="Optimizers compared (default sgd,momentum,rmsprop,adam).")] = None,
    data: DataOpt = "digits",
    seeds: SeedsOpt = 3,
    budget: BudgetOpt = 8,
    epochs: EpochsOpt = 10,
    default_lr: DefaultLrOpt = 0.01,
    target_loss: TargetOpt = None,
    storage: StorageOpt = None,
    study: CmpStudyOpt = None,
    seed: SeedOpt = 0,
    search_engine: SearchEngineOpt = "population",
    output: OutOpt = None,
    no_html: NoHtmlOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The optimizer case study: SGD, SGD with momentum, RMSprop and Adam on the same MLP and data
    (same as `shoal compare --param optimizer`)."""
    _compare("optimizer", values, data, seeds, budget, epochs, default_lr, target_loss, storage, study, seed,
             search_engine, output, no_html, quiet)
