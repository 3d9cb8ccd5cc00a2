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
    stages, timing; as tables here and as one offline HTML file."""
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
