"""``shoal schedule``: a PBT member's hyperparameter schedule, exported and replayed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from shoal._errors import ConfigError
from shoal.cli._main import StorageOpt, _load, app, console


@app.command()
def schedule(
    storage: StorageOpt = None,
    study: Annotated[Optional[str], typer.Option(help="Study name (needed when the storage holds several).")] = None,
    trial: Annotated[Optional[int], typer.Option(help="Trial number (default: the best).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the schedule as JSON here.")] = None,
    replay: Annotated[bool, typer.Option("--replay", help="Train the schedule again from epoch 0 on the "
                                         "study's data and compare with the recorded curve.")] = False,
) -> None:
    """Show a PBT trial's hyperparameter schedule: which settings it trained with from which epoch."""
    from rich.table import Table

    from shoal.study._pbt import schedule_of

    st = _load(storage, study)
    if trial is None:
        t = st.best_trial
    else:
        if not 0 <= trial < len(st.trials):
            raise ConfigError(f"No trial {trial} in study {st.study_name!r}: it has trials 0 to {len(st.trials) - 1}.")
        t = st.trials[trial]
    sched = schedule_of(t)
    table = Table(title=f"schedule of trial {t.number} ({st.study_name})")
    table.add_column("from epoch", justify="right")
    table.add_column("seed", justify="right")
    table.add_column("changed settings")
    previous: dict = {}
    for seg in sched:
        cfg = seg["config"]
        changed = {k: v for k, v in cfg.items() if previous.get(k) != v}
        text = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in changed.items())
        table.add_row(str(seg["from_epoch"]), str(seg["seed"]), text)
        previous = cfg
    console.print(table)
    if output is not None:
        try:
            output.write_text(json.dumps({"study": st.study_name, "trial": t.number, "schedule": sched}, indent=2))
        except OSError as exc:
            raise ConfigError(f"Cannot write the schedule to {str(output)!r}: {exc.strerror}. Give a path in a folder "
                              "that exists and that you may write to.") from None
        console.print(f"schedule written to {output}")
    if replay:
        from shoal.study import make_experiment
        from shoal.study._builtin import DATA_SETTINGS, prepare_data
        from shoal.study._pbt import replay as run_replay

        settings = dict(st.user_attrs.get("shoal", {}))
        keep = {k: settings[k] for k in DATA_SETTINGS if k in settings and k != "folds"}
        recorded = t.user_attrs.get("curves", {}).get("val_loss", [])
        if not recorded:
            raise ConfigError(f"Trial {t.number} recorded no epoch ({t.state.name.lower()}): there is nothing to "
                              "replay and compare. Pick a trial with a curve (`shoal show`).")
        # the trial's own epochs (a replaced or failed member stopped before the study's last epoch)
        exp = make_experiment({**keep, "epochs": len(recorded)})
        records = run_replay(sched, prepare_data(exp).folds[0], family=exp.preset, epochs=exp.epochs)
        diff = max(abs(a.val_loss - b) for a, b in zip(records, recorded))
        why = t.user_attrs.get("fail_reason")
        state = "" if t.state.name == "COMPLETE" else f" (the trial {t.state.name.lower()} there" + \
            (f": {why}" if why else "") + ")"
        console.print(f"replayed {len(records)} epochs{state}: final validation loss {records[-1].val_loss:.6g} "
                      f"(recorded {recorded[-1]:.6g}; largest difference over the curve {diff:.2g})")


@app.command()
def retune(
    source: Annotated[str, typer.Argument(help="The earlier study's storage (x.db, x.log or a URL).")],
    from_study: Annotated[Optional[str], typer.Option(help="The earlier study (needed when the storage holds several).")] = None,
    top: Annotated[int, typer.Option(help="How many of its best configurations run first.")] = 5,
    narrow: Annotated[bool, typer.Option("--narrow", help="Search a space narrowed around them.")] = False,
    data: Annotated[Optional[str], typer.Option(help="The new data (default: the earlier study's).")] = None,
    trials: Annotated[Optional[int], typer.Option(help="Trials in the new study (the re-runs count).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs per trial (default: the earlier study's).")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="Strategy (default: the earlier study's).")] = None,
    storage: StorageOpt = None,
    study: Annotated[Optional[str], typer.Option(help="The new study's name.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the new study.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Start a new study from an earlier one: re-run its best configurations first, then search on;
    the table says whether the earlier best settings survived."""
    from rich.table import Table

    from shoal.study._tune import retune as run_retune
    from shoal.report._html import warm_rows
    from shoal.study._warm import compare

    settings = {k: v for k, v in dict(data=data, trials=trials, epochs=epochs, strategy=strategy, storage=storage,
                                       study=study, seed=seed, device=device).items() if v is not None}
    result = run_retune(source, from_study=from_study, top=top, narrow=narrow, progress=not quiet, console=console,
                        **settings)
    table = Table(title=f"did the best settings of {result.study.user_attrs['warm_start']['study']!r} survive?")
    header, rows = warm_rows(compare(result.study), result.experiment.metric.split(",")[0])
    for col in header:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if result.best_value is not None:
        console.print(f"best {result.experiment.objectives[0]} [green]{result.best_value:.4g}[/] (trial "
                      f"{result.best_trial.number}); study [bold]{result.study.study_name}[/].")
