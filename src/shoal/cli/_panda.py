"""Panda-mode commands: ``shoal babysit``, ``shoal control ...``, ``shoal fork``, ``shoal lr-find``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.markup import escape

from shoal._errors import ConfigError
from shoal.cli._main import StorageOpt, app, console

control_app = typer.Typer(
    help="Steer a running babysat trial from another terminal: lr, pause, resume, stop, checkpoint.",
    no_args_is_help=True,
)
app.add_typer(control_app, name="control")

StudyOpt = Annotated[Optional[str], typer.Option(help="Study name (needed when the storage has several).")]
ParamOpt = Annotated[Optional[list[str]], typer.Option("--param", "-p", help="A fixed value: lr=0.01, optimizer=sgd.")]
PlateauOpt = Annotated[Optional[str], typer.Option(
    help="Reduce-on-plateau: 'patience,factor' (3,0.5: halve the lr after 3 epochs without a lower val loss).")]
PollOpt = Annotated[float, typer.Option(help="Seconds between reads of the control channel (0: every step).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No live view.")]
ModelOpt = Annotated[Optional[str], typer.Option(
    help="Your nn.Module class or builder instead of the preset: 'module:Name' or 'file.py:Name'.")]
ObjectiveOpt = Annotated[Optional[str], typer.Option(
    help="Your fidelity objective fn(config, epochs, state) -> (value, state), called once per epoch: "
         "'module:fn' or 'file.py:fn'.")]


def _params(param: list[str] | None) -> dict:
    from shoal.space import parse_override

    return dict(parse_override(p) for p in (param or []))


def _report(r) -> None:
    if r.state == "complete":
        console.print(f"trial {r.trial} of study [bold]{r.study}[/] complete: value [green]{r.value:.4g}[/] after "
                      f"{len(r.history.epochs)} epochs, {len(r.events)} events; checkpoints in {r.checkpoints}.")
        return
    console.print(f"[red]trial {r.trial} of study {escape(r.study)}: {r.state}[/]: {escape(str(r.fail_reason))}")
    raise typer.Exit(1)


@app.command()
def babysit(
    data: Annotated[str, typer.Option(help="digits, mnist[:folder], fashion-mnist[:folder], x.csv or x.npz.")] = "digits",
    preset: Annotated[str, typer.Option(help="Model preset: mlp or cnn.")] = "mlp",
    param: ParamOpt = None,
    epochs: Annotated[int, typer.Option(help="Epochs to train.")] = 15,
    seed: Annotated[int, typer.Option(help="Seed of the split, the weights and the data order.")] = 0,
    metric: Annotated[str, typer.Option(help="The trial's value: val_loss or val_acc.")] = "val_loss",
    storage: StorageOpt = None,
    study: Annotated[Optional[str], typer.Option(help="Study name (default: <data>-<preset>-panda).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    val_fraction: Annotated[float, typer.Option(help="Validation share of the data.")] = 0.2,
    plateau: PlateauOpt = None,
    paused: Annotated[bool, typer.Option("--paused", help="Start paused; `shoal control resume` starts it.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the latest interrupted babysat trial.")] = False,
    trial: Annotated[Optional[int], typer.Option(help="With --resume: the trial to continue.")] = None,
    new: Annotated[bool, typer.Option("--new", help="Start a new trial even if one with these settings was interrupted.")] = False,
    poll: PollOpt = 0.2,
    quiet: QuietOpt = False,
    model: ModelOpt = None,
    objective: ObjectiveOpt = None,
) -> None:
    """Train one configuration with a live view; steer it with `shoal control` from another terminal.

    Running the same command again after a crash or Ctrl-C continues the trial from its last checkpoint.
    """
    from shoal.panda import babysit as run

    if new and (resume or trial is not None):
        raise ConfigError("--new starts a new trial; it cannot go with --resume or --trial.")
    how = False if new else (trial if trial is not None else (True if resume else None))
    r = run(data=data, preset=preset, params=_params(param), epochs=epochs, seed=seed, metric=metric,
            storage=storage, study=study, device=device, val_fraction=val_fraction, plateau=plateau, paused=paused,
            resume=how, poll=poll, progress=not quiet, console=console, model=model, objective=objective)
    _report(r)


@app.command()
def fork(
    trial: Annotated[int, typer.Option(help="The trial to fork from.")],
    epoch: Annotated[int, typer.Option(help="Start from its checkpoint after this many epochs.")],
    param: ParamOpt = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs in all (default: the parent's).")] = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    plateau: PlateauOpt = None,
    paused: Annotated[bool, typer.Option("--paused", help="Start paused.")] = False,
    poll: PollOpt = 0.2,
    quiet: QuietOpt = False,
    model: ModelOpt = None,
    objective: ObjectiveOpt = None,
) -> None:
    """Start a new trial from a babysat trial's checkpoint with edited training settings (-p lr=0.001).

    A trial of your model or objective is forked with the same code (imported by the path it was
    started with; --model / --objective give it again)."""
    from shoal.panda import fork as run

    r = run(trial=trial, epoch=epoch, params=_params(param), epochs=epochs, storage=storage, study=study,
            plateau=plateau, paused=paused, poll=poll, progress=not quiet, console=console, model=model,
            objective=objective)
    _report(r)


@app.command("lr-find")
def lr_find(
    data: Annotated[str, typer.Option(help="digits, mnist[:folder], fashion-mnist[:folder], x.csv or x.npz.")] = "digits",
    preset: Annotated[str, typer.Option(help="Model preset: mlp or cnn.")] = "mlp",
    param: ParamOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, the weights and the data order.")] = 0,
    steps: Annotated[int, typer.Option(help="Training steps while the lr rises.")] = 200,
    min_lr: Annotated[float, typer.Option(help="First learning rate.")] = 1e-6,
    max_lr: Annotated[float, typer.Option(help="Last learning rate.")] = 10.0,
    storage: StorageOpt = None,
    study: Annotated[Optional[str], typer.Option(help="Study to store the result in (default: <data>-<preset>-panda).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    out: Annotated[Optional[str], typer.Option(help="Plot file (HTML; default next to the checkpoints).")] = None,
) -> None:
    """Learning-rate range test: loss against an exponentially rising lr, with a suggested value."""
    from shoal.panda import lr_find as run

    run(data=data, preset=preset, params=_params(param), seed=seed, steps=steps, min_lr=min_lr, max_lr=max_lr,
        storage=storage, study=study, device=device, out=out, console=console)


TrialOpt = Annotated[Optional[int], typer.Option(help="Trial number (default: the study's only running babysat trial).")]
WaitOpt = Annotated[float, typer.Option(help="Seconds to wait for the trainer to apply it.")]


def _send(storage, study, trial, what, value, wait) -> None:
    from shoal.panda import send

    out = send(storage, study, trial, what, value, wait)
    e = out["event"]
    if e is not None:
        console.print(f"trial {out['trial']}: {what} applied at epoch {e['epoch']}, step {e['step']}; lr now {e['lr']:.4g}.")
    elif not out["alive"]:
        console.print(f"[yellow]trial {out['trial']}: no trainer is running it now; the command applies when "
                      "`shoal babysit` resumes it.[/]")
    else:
        console.print(f"trial {out['trial']}: {what} sent; not applied within {wait:g} s (it applies at the next poll).")


@control_app.command("lr")
def control_lr(
    value: Annotated[str, typer.Argument(help="A learning rate (0.01), or a factor: x0.5 (also *0.5).")],
    storage: StorageOpt = None, study: StudyOpt = None, trial: TrialOpt = None, wait: WaitOpt = 5.0,
) -> None:
    """Set the learning rate (the schedule's decay continues relative to it), or multiply it: x0.5."""
    multiply = value[:1] in ("x", "*")
    text = value[1:] if multiply else value
    try:
        number = float(text)
    except ValueError:
        raise ConfigError(f"The learning rate must be a positive number such as 0.01, or a factor such as x0.5. "
                          f"Got {value!r} instead.") from None
    _send(storage, study, trial, "multiply_lr" if multiply else "set_lr", number, wait)


def _simple(what: str, doc: str) -> None:
    def command(storage: StorageOpt = None, study: StudyOpt = None, trial: TrialOpt = None, wait: WaitOpt = 5.0) -> None:
        _send(storage, study, trial, what, None, wait)

    command.__doc__ = doc
    control_app.command(what)(command)


_simple("pause", "Pause before the next step (the trainer keeps listening).")
_simple("resume", "Resume a paused trial.")
_simple("stop", "Stop before the next step; the trial completes with its last finished epoch.")
_simple("checkpoint", "Save a checkpoint before the next step.")
