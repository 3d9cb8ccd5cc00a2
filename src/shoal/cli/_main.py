"""The ``shoal`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from shoal._errors import ConfigError, ShoalError
from shoal.study._shared import _hide_password

app = typer.Typer(
    name="shoal",
    help="Tune the hyperparameters of neural networks: grid, random, TPE, GP, CMA-ES, QMC, on built-in "
    "MLP / CNN presets or your own model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
def _console(stderr: bool = False) -> Console:
    """A rich console; written to a file or a pipe (a log, CI), 140 columns rather than rich's 80,
    which cut table cells (trial numbers, values) to "..." unless $COLUMNS says otherwise."""
    import os

    stream = sys.stderr if stderr else sys.stdout
    piped = not (hasattr(stream, "isatty") and stream.isatty()) and not os.environ.get("COLUMNS")
    return Console(stderr=stderr, width=140 if piped else None)


console = _console()
err_console = _console(stderr=True)

StorageOpt = Annotated[Optional[str], typer.Option(
    "--storage", "-s", help="SQLite file (default shoal.db), journal file (x.log) or SQLAlchemy URL.")]


def _default(name: str) -> str:
    """" (default X)" for an Experiment field, so that --help shows what an omitted flag means."""
    from shoal.study._experiment import Experiment

    return f" (default {Experiment.__dataclass_fields__[name].default})"


@app.command()
def tune(
    experiment: Annotated[Optional[Path], typer.Argument(help="Experiment TOML file (flags override it).")] = None,
    data: Annotated[Optional[str], typer.Option(help="digits, mnist[:folder], fashion-mnist[:folder], x.csv or x.npz" + _default("data") + ".")] = None,
    preset: Annotated[Optional[str], typer.Option(help="Model preset: mlp or cnn" + _default("preset") + ".")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="grid, random, qmc, tpe, gp, cmaes, nsga2, coarse-to-fine or pbt" + _default("strategy") + ".")] = None,
    trials: Annotated[Optional[int], typer.Option(help="Total trials in the study, finished ones included" + _default("trials") + "; with --timeout and no --trials, trials start until the timeout.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs each trial trains (at most: pruning and --patience stop some sooner)" + _default("epochs") + ".")] = None,
    metric: Annotated[Optional[str], typer.Option(
        "--metric", "--objective", help="What to optimize: val_loss, val_acc, val_balanced_acc, val_f1, val_r2, val_mse, "
        "train_seconds, epoch_seconds, params, memory_mb, latency_ms, gap, acc_gap (<name>_std: spread over "
        "folds); several, comma-separated, for a Pareto search: val_acc,train_seconds" + _default("metric") + ".")] = None,
    constraint: Annotated[Optional[list[str]], typer.Option(
        "--constraint", "-c", help="A limit on any measure, e.g. params<=100000 or epoch_seconds<=2 "
        "(repeatable); trials over it are recorded as infeasible.")] = None,
    storage: StorageOpt = None,
    study: Annotated[Optional[str], typer.Option(help="Study name (default: <data>-<preset>).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Study seed (sampler, splits, trial seeds)" + _default("seed") + ".")] = None,
    pruner: Annotated[Optional[str], typer.Option(help="none, median, sha or hyperband" + _default("pruner") + ".")] = None,
    param: Annotated[Optional[list[str]], typer.Option(
        "--param", "-p", help="Override a parameter: lr=0.01 (fix), lr=1e-4:1e-1 (range), optimizer=adam,sgd.")] = None,
    val_fraction: Annotated[Optional[float], typer.Option(help="Validation share of the data" + _default("val_fraction") + ".")] = None,
    test_fraction: Annotated[Optional[float], typer.Option(help="Share of the rows held out from the search, for "
                                                           "`shoal best --test` (default 0: none).")] = None,
    official_test: Annotated[bool, typer.Option("--official-test", help="Hold out the data set's own test part "
                                                "instead (MNIST's t10k file, a .npz's x_test) for `shoal best --test`; "
                                                "--val-fraction is then a share of the training rows.")] = False,
    folds: Annotated[Optional[int], typer.Option(help="k-fold cross validation instead of one split.")] = None,
    patience: Annotated[Optional[int], typer.Option(help="Early stopping: epochs without improvement.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N" + _default("device") + ".")] = None,
    engine: Annotated[Optional[str], typer.Option(help="auto, population (many trials as one batched "
                                                  "computation) or single (one model at a time).")] = None,
    population: Annotated[Optional[int], typer.Option(help="Trials training at once in population mode.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes for populations (default: on a CPU one per core, while each gets "
                                                   "4 trials at least; 1 = this process, with torch's threads).")] = None,
    executor: Annotated[Optional[str], typer.Option(help="Where populations train: local (this process), processes "
                                                    "(--workers of them) or ray (a Ray cluster; default auto).")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address for --executor ray (as printed by "
                                                   "`ray start --head`; default: a local Ray).")] = None,
    memory_mb: Annotated[Optional[float], typer.Option(help="Memory budget for populations in MiB (default: a "
                                                       "quarter of the free memory).")] = None,
    grid_points: Annotated[Optional[int], typer.Option(help="Values per continuous parameter for grid" + _default("grid_points") + ".")] = None,
    target: Annotated[Optional[str], typer.Option(help="CSV target column (default: the last).")] = None,
    task: Annotated[Optional[str], typer.Option(help="classification or regression (default: inferred from the "
                                                "target: strings, and integers with at most 50 values, are classes).")] = None,
    download: Annotated[bool, typer.Option("--download", help="Download MNIST files when missing.")] = False,
    timeout: Annotated[Optional[float], typer.Option(help="Time limit in seconds: no trial starts after it, and trials in training stop at the end of their current epoch (recorded as pruned, stopped=timeout; PBT ranks its population as it stands).")] = None,
    stages: Annotated[Optional[str], typer.Option(help="coarse-to-fine stages, e.g. 'qmc:0.4,tpe' (a count or "
                                                  "share of --trials each; one stage takes the rest).")] = None,
    top_fraction: Annotated[Optional[float], typer.Option(help="coarse-to-fine: share of finished trials each "
                                                          "stage narrows around (default 0.2).")] = None,
    pbt_interval: Annotated[Optional[int], typer.Option(help="pbt: epochs between exploit steps (default 2).")] = None,
    pbt_quantile: Annotated[Optional[float], typer.Option(help="pbt: share of the population replaced at each "
                                                          "step by copies of the top share (default 0.25).")] = None,
    pbt_explore: Annotated[Optional[str], typer.Option(help="pbt: 'perturb' (x0.8 / x1.2) or 'resample'.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Validate the settings, space, data and storage, "
                                        "then exit (0 when all is well) without training or writing.")] = False,
) -> None:
    """Run (or resume) a tuning study. Running the same command again continues it."""
    from shoal.space import parse_override
    from shoal.study import load_experiment, make_experiment
    from shoal.study._display import summary_table
    from shoal.study._tune import tune as run_tune

    flags = dict(data=data, preset=preset, strategy=strategy, trials=trials, epochs=epochs, metric=metric,
                 constraints=constraint or None,
                 storage=storage, study=study, seed=seed, pruner=pruner, val_fraction=val_fraction, test_fraction=test_fraction,
                 official_test=official_test or None, folds=folds,
                 patience=patience, device=device, engine=engine, population=population, workers=workers, executor=executor, address=address, memory_mb=memory_mb, grid_points=grid_points, target=target, task=task, timeout=timeout,
                 download=download or None, stages=stages, top_fraction=top_fraction, pbt_interval=pbt_interval,
                 pbt_quantile=pbt_quantile, pbt_explore=pbt_explore)
    params = dict(parse_override(p) for p in (param or []))
    if params:
        flags["params"] = params
    if experiment is not None:
        exp = load_experiment(experiment, **flags)
    else:
        exp = make_experiment({k: v for k, v in flags.items() if v is not None})
    if check:
        from shoal.study._tune import check as check_experiment

        console.print(f"[green]ok:[/] {check_experiment(exp)}", highlight=False)
        return
    result = run_tune(experiment=exp, progress=not quiet, console=console)
    study_obj = result.study
    if any(t.state.name == "COMPLETE" for t in study_obj.get_trials(deepcopy=False)):  # else an empty table
        console.print(summary_table(study_obj, metric=exp.metric))
    if result.best_params is None:
        stopped = [t for t in study_obj.get_trials(deepcopy=False) if t.user_attrs.get("stopped") == "timeout"]
        if stopped:
            most = max(t.user_attrs.get("epochs_run", 0) for t in stopped)
            console.print(f"[yellow]No trial completed before the timeout ({exp.timeout:g} s): {len(stopped)} stopped "
                          f"at it, after at most {most} of {exp.epochs} epochs. Give it more time (--timeout) or "
                          f"fewer epochs (--epochs).[/]")
            raise typer.Exit(1)
        if exp.timeout is not None and not study_obj.get_trials(deepcopy=False):
            console.print(f"[yellow]No trial started before the timeout ({exp.timeout:g} s): loading the data and "
                          f"starting the workers took that long. Give it more time (--timeout).[/]")
            raise typer.Exit(1)
        why = " within the limits" if exp.constraints else ""
        console.print(f"[yellow]No trial completed{why}; see `shoal show` for the reasons.[/]")
        raise typer.Exit(1)
    where = f"study [bold]{study_obj.study_name}[/] in {_hide_password(str(exp.storage or 'shoal.db'))}"
    if len(exp.objectives) > 1:
        first = exp.objectives[0]
        console.print(
            f"{len(result.pareto)} trials on the Pareto front of {', '.join(exp.objectives)}; {where}. "
            f"`shoal best --by {first} --where '{exp.objectives[1]}<=X'` picks one (e.g. the best {first} "
            f"under a limit)."
        )
        return
    console.print(
        f"best {exp.metric} [green]{result.best_value:.4g}[/] (trial {result.best_trial.number}); "
        f"{where}. `shoal best --study {study_obj.study_name}` prints its configuration."
    )


def _load(storage: str | None, study: str | None):
    from shoal.study._experiment import open_stored

    return open_stored(storage, study)


@app.command()
def show(
    storage: StorageOpt = None,
    study: Annotated[Optional[str], typer.Option(help="Study name (needed when the storage has several).")] = None,
    top: Annotated[int, typer.Option(help="How many of the best trials to list.")] = 10,
) -> None:
    """Summarize a stored study: trial counts by state, the best trials, failure reasons."""
    from collections import Counter

    from rich.table import Table

    from shoal.study._display import summary_table

    s = _load(storage, study)
    trials = s.get_trials(deepcopy=False)
    from shoal.study._runner import INTERRUPTED

    # a trial a killed or stopped run left is "interrupted" (it runs again), not a failure
    counts = Counter("interrupted" if t.user_attrs.get("fail_reason") == INTERRUPTED else t.state.name.lower()
                     for t in trials)
    settings = s.user_attrs.get("shoal", {})
    console.print(f"[bold]{s.study_name}[/]: {len(trials)} trials "
                  + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    if counts.get("interrupted") or counts.get("waiting"):
        console.print("[dim]interrupted: stopped by a killed or interrupted run; waiting: queued to run again. "
                      "The same `shoal tune` command continues the study.[/]")
    if counts.get("running"):
        console.print("[dim]running: in training now, or left by a run that was killed (the next `shoal tune` "
                      "on this study recovers those).[/]")
    if settings:
        # a user's own objective: its name, not the data and preset it never read
        keys = ("objective", "strategy", "metric") if "objective" in settings else \
            ("data", "preset", "strategy", "epochs", "metric")
        shown = {k: settings[k] for k in keys if k in settings}
        if settings.get("pruner") not in (None, "none"):
            shown["pruner"] = settings["pruner"]
        if len(settings.get("objectives") or []) > 1:
            shown["metric"] = ",".join(settings["objectives"])
        if settings.get("constraints"):
            shown["constraints"] = ",".join(settings["constraints"])
        if settings.get("folds"):
            shown["folds"] = settings["folds"]
        if settings.get("official_test"):
            shown["test"] = "the data's own test part"
        elif settings.get("test_fraction"):
            shown["test_fraction"] = settings["test_fraction"]
        console.print("[dim]" + ", ".join(f"{k}={v}" for k, v in shown.items()) + "[/]")
    if counts.get("complete"):
        console.print(summary_table(s, top=top, metric=settings.get("metric", "value")))
    else:
        console.print("[yellow]no complete trial yet[/]")
    scored = s.user_attrs.get("test")
    if isinstance(scored, dict) and "test_loss" in scored:  # `shoal best --test`
        acc = f", accuracy {scored['test_acc']:.4f}" if "test_acc" in scored else ""
        console.print(f"held-out test rows ({scored['rows']}): trial {scored['trial']}, loss {scored['test_loss']:.4g}{acc}")
    failed = [t for t in trials if t.state.name == "FAIL" and t.user_attrs.get("fail_reason") != INTERRUPTED]
    if failed:
        table = Table(title="failed trials")
        table.add_column("#", justify="right")
        table.add_column("reason")
        for t in failed[-top:]:
            table.add_row(str(t.number), str(t.user_attrs.get("fail_reason", "?"))[:400])
        console.print(table)


@app.command()
def best(
    storage: StorageOpt = None,
    study: Annotated[Optional[str], typer.Option(help="Study name (needed when the storage has several).")] = None,
    by: Annotated[Optional[str], typer.Option(help="Rank by this measure (default: the first objective), "
                                              "e.g. val_acc.")] = None,
    where: Annotated[Optional[list[str]], typer.Option(help="Only trials within this limit, e.g. "
                                                       "'epoch_seconds<=2' (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the configuration as JSON only.")] = False,
    test: Annotated[bool, typer.Option("--test", help="Train it again as in the study and evaluate it once on "
                                       "the held-out test rows (a study with --test-fraction or --official-test).")] = False,
) -> None:
    """Print the best trial's configuration: the best feasible one, or with --by / --where the best
    by one measure among the trials within limits (a point of a Pareto front)."""
    from collections import Counter

    from optuna.trial import TrialState

    from shoal.study._objectives import objectives_of, pick

    s = _load(storage, study)
    if not s.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        states = Counter(t.state.name.lower() for t in s.get_trials(deepcopy=False))
        if states.get("fail"):
            raise ConfigError(f"The study {s.study_name!r} has no complete trial: {states['fail']} of its "
                              f"{sum(states.values())} trials failed. `shoal show` lists their reasons.")
        raise ConfigError(f"The study {s.study_name!r} has no complete trial yet. Run `shoal tune` first.")
    t = pick(s, by, where)
    if t is None:
        limits = f" within {', '.join(where)}" if where else " within the study's limits"
        raise ConfigError(f"No complete trial of {s.study_name!r} qualifies{limits}. Loosen the limit, or see "
                          "`shoal show` for the trials' values.")
    config = t.user_attrs.get("config", t.params)
    names = objectives_of(s)
    values = dict(zip(names, t.values))
    scored = None
    if test:
        from shoal.study._builtin import test_score

        scored = test_score(s, t)
    if as_json:
        out = {"trial": t.number, "value": t.values[0] if len(t.values) == 1 else values, "config": config,
               **({"test": scored} if scored else {})}
        typer.echo(json.dumps(out, indent=2))
        return
    from rich.table import Table

    shown = ", ".join(f"{k} {v:.6g}" for k, v in values.items()) if len(names) > 1 else f"value {t.value:.6g}"
    table = Table(title=f"best trial {t.number} of {s.study_name}: {shown}")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    for k, v in config.items():
        table.add_row(k, f"{v:.6g}" if isinstance(v, float) else str(v))
    console.print(table)
    if len(names) > 1 and by is None and not where:  # several objectives: this is one point of the front, chosen by the first
        front = len(s.best_trials)
        console.print(f"[dim]one of the {front} trials on the Pareto front, the best by {names[0]}; `--by "
                      f"{names[1]}` picks by another objective, `--where` sets limits (`shoal report` draws the "
                      "front).[/]", highlight=False)
    measures = t.user_attrs.get("measures", {})
    if measures:
        console.print("[dim]" + ", ".join(f"{k}={v:.4g}" for k, v in measures.items()) + "[/]", highlight=False)
    if scored:
        acc = f", test accuracy [green]{scored['test_acc']:.4f}[/]" if "test_acc" in scored else ""
        console.print(f"on the {scored['rows']} held-out test rows, trained again for {scored['epochs']} epochs: "
                      f"test loss [green]{scored['test_loss']:.4g}[/]{acc} (stored as the study's 'test' attribute)")


@app.command()
def space(
    preset: Annotated[str, typer.Option(help="mlp or cnn.")] = "mlp",
    param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Overrides, as for tune.")] = None,
) -> None:
    """Print a preset's search space (with overrides applied)."""
    from shoal.space import parse_override
    from shoal.space import preset as get_preset

    s = get_preset(preset)
    for p in param or []:
        s.override(*parse_override(p))
    console.print(s.describe(), highlight=False)


from shoal.cli import _panda  # noqa: E402,F401  (babysit, control, fork, lr-find)
from shoal.cli import _report  # noqa: E402,F401  (report, compare, compare-optimizers)
from shoal.cli import _dashboard  # noqa: E402,F401  (dashboard)
from shoal.cli import _strategies  # noqa: E402,F401  (schedule)


def main() -> None:
    """Entry point: bad input ends with one clear paragraph and exit code 2, no traceback."""
    try:
        # Without standalone mode, click returns (not raises) the code of typer.Exit, and 130 for a
        # KeyboardInterrupt (Ctrl-C); anything else a command returns is None.
        code = _command()(standalone_mode=False)
    except ShoalError as exc:
        _error(str(exc))
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    except Exception as exc:
        if type(exc).__name__ == "StorageInternalError" or "compatible with the table schema" in str(exc):
            # a storage Optuna cannot use (made by another Optuna version, or damaged): its reason, no traceback
            _error(f"The storage could not be used: {str(exc).strip().splitlines()[0]} If it was made by another "
                   "Optuna version, upgrade it (`optuna storage upgrade --storage URL`) or use that version; "
                   "otherwise give another --storage file.")
        # Usage errors (unknown flag, a word where a number goes) are click's ClickException; typer
        # vendors its own click, so they are told apart by their format_message, not their class.
        if not callable(getattr(exc, "format_message", None)):
            raise
        message = " ".join(str(exc.format_message()).split()).rstrip(".")
        if not message:  # `shoal` alone: the help was printed
            sys.exit(2)
        ctx = getattr(exc, "ctx", None)
        _error(f"{message}. See `{getattr(ctx, 'command_path', None) or 'shoal'} --help`.")
    if code == 130:
        err_console.print("[yellow]interrupted:[/] run the same command again to continue the study.")
    sys.exit(code if isinstance(code, int) else 0)


def _command():
    """The click command behind ``app``, built once per process: typer rebuilds it from every
    command's signature on each ``app()`` call, which costs more than checking a bad flag."""
    global _COMMAND
    if _COMMAND is None:
        _COMMAND = typer.main.get_command(app)
    return _COMMAND


_COMMAND = None


def _error(message: str) -> None:
    """One paragraph on stderr and exit code 2: bad input, or a storage that cannot be written."""
    from rich.markup import escape

    # escaped: messages quote TOML tables ("[space.lr]"), which rich would take for markup and drop
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    sys.exit(2)
