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
        output.write_text(json.dumps({"study": st.study_name, "trial": t.number, "schedule": sched}, indent=2))
        console.print(f"schedule written to {output}")
    if replay:
        from shoal.study import make_experiment
        from shoal.study._builtin import prepare_data
        from shoal.study._pbt import replay as run_replay

        settings = dict(st.user_attrs.get("shoal", {}))
        keep = {k: settings[k] for k in ("data", "preset", "seed", "val_fraction", "test_fraction", "target",
                                          "device") if k in settings}
        exp = make_experiment({**keep, "epochs": int(settings.get("epochs", len(t.user_attrs["curves"]["val_loss"])))})
        records = run_replay(sched, prepare_data(exp).folds[0], family=exp.preset, epochs=exp.epochs)
        recorded = t.user_attrs["curves"]["val_loss"]
        diff = max(abs(a.val_loss - b) for a, b in zip(records, recorded))
        console.print(f"replayed {len(records)} epochs: final validation loss {records[-1].val_loss:.6g} "
                      f"(recorded {recorded[-1]:.6g}; largest difference over the curve {diff:.2g})")
