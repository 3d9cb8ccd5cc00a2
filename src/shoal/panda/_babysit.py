"""Panda mode: one model trained as an Optuna trial, watched, steered, checkpointed, forked, resumed.

A babysat trial records what a tuned trial records (config, curves, seed, seconds, epochs_run, gap,
device, engine "single") plus ``events`` (each applied command and plateau decision, with its epoch
and step), ``lineage`` (for forks: parent trial, parent epoch, changes) and ``panda`` (the settings a
resume or fork needs, and where its checkpoints are).

The model is a preset, the user's ``nn.Module`` (``model=``: trained by the same step loop), or the
user's fidelity objective (``objective=fn(config, epochs, state) -> (value, state)``: one call per
epoch, commands between epochs, its state checkpointed). A resume or fork finds the user's code by
its import path (kept in the trial's settings), or takes it again as ``model=`` / ``objective=``.
"""

from __future__ import annotations

import contextlib
import difflib
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from shoal._errors import ConfigError, TrialFailed
from shoal.panda._checkpoint import (checkpoint_name, checkpoint_root, latest_checkpoint, list_checkpoints,
                                     load_checkpoint, save_checkpoint, trial_folder)

if TYPE_CHECKING:
    import optuna
    from rich.console import Console

    from shoal.engine import EpochRecord, History
    from shoal.panda._trainer import Trainer

__all__ = ["PandaResult", "babysit", "fork"]

# Changing these would change the model's shape or the optimizer's state layout: a fork cannot.
ARCHITECTURE = ("depth", "width", "shape", "init", "activation", "batch_norm", "conv_layers", "channels",
                "kernel_size", "optimizer")


@dataclass
class PandaResult:
    """What ``babysit`` and ``fork`` return.

    Attributes:
        trial: the trial number in the study.
        study: the study name.
        state: "complete", "fail", or "running" (interrupted: resume it with the same call).
        value: the metric of the last finished epoch (None without one).
        history: the per-epoch records.
        events: the applied commands and plateau decisions.
        lineage: parent trial, parent epoch and changes (forks), else None.
        config: the full configuration trained.
        checkpoints: the folder holding this trial's checkpoints.
        fail_reason: why it failed, if it did.
    """

    trial: int
    study: str
    state: str
    value: float | None
    history: History
    events: list[dict[str, Any]]
    lineage: dict[str, Any] | None
    config: dict[str, Any]
    checkpoints: Path
    fail_reason: str | None = None


def check_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Fixed hyperparameter values: known names only (one typo would otherwise train the defaults)."""
    from shoal.engine import DEFAULTS

    params = dict(params or {})
    for key, value in params.items():
        if key not in DEFAULTS:
            close = difflib.get_close_matches(key, sorted(DEFAULTS), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"Unknown parameter '{key}'.{hint} Parameters: {', '.join(sorted(DEFAULTS))}.")
        if isinstance(value, (list, tuple, dict)):
            raise ConfigError(f"Babysitting trains one configuration: the '{key}' parameter needs one value. "
                              f"Got {value!r} instead.")
    return params


def _experiment(settings: Mapping[str, Any]):
    from shoal.study._experiment import make_experiment

    keys = ("data", "preset", "epochs", "metric", "storage", "study", "seed", "device", "val_fraction", "target")
    return make_experiment({k: settings[k] for k in keys if settings.get(k) is not None} | {"engine": "single"})


def _study_name(exp) -> str:
    return exp.study if exp.study else f"{exp.study_name}-panda"


def babysit(
    *,
    data: str = "digits",
    preset: str = "mlp",
    params: Mapping[str, Any] | None = None,
    epochs: int = 15,
    seed: int = 0,
    metric: str = "val_loss",
    storage: str | None = None,
    study: str | None = None,
    device: str = "auto",
    val_fraction: float = 0.2,
    target: str | None = None,
    plateau: str | tuple | None = None,
    paused: bool = False,
    resume: bool | int | None = None,
    poll: float = 0.2,
    progress: bool = True,
    console: Console | None = None,
    on_epoch: Callable[[EpochRecord], bool | None] | None = None,
    model: Any = None,
    objective: Callable[..., Any] | str | None = None,
) -> PandaResult:
    """Train one configuration as a trial of a study, with a live view and live control.

    Args:
        data, preset, epochs, seed, metric, storage, study, device, val_fraction, target: as for
            ``shoal.tune``; the study defaults to ``<data>-<preset>-panda``, ``seed`` seeds both the
            split and the training.
        params: fixed hyperparameter values (the rest take the engine's defaults).
        plateau: reduce-on-plateau, ``"patience,factor"`` such as ``"3,0.5"``.
        paused: start paused (send ``resume`` to start).
        resume: None continues an interrupted babysat trial of this study with the same settings if
            there is one; True continues the latest interrupted one (error if none); a number
            continues that trial; False always starts a new trial.
        poll: seconds between reads of the control channel (0: before every step).
        progress: show the live view.
        on_epoch: called after each epoch (and its checkpoint) with its record; True stops.
        model: the user's ``nn.Module`` class or builder (or its ``"module:Name"`` path) instead of the
            preset; ``params`` holds its arguments and the training keys.
        objective: the user's fidelity objective ``fn(config, epochs, state=None) -> (value, state)``
            (or ``"module:fn"``), called one epoch at a time with ``params`` as its config; its value
            is the validation loss (or a dict with ``val_loss``, ``val_acc``...). No data is loaded.

    Returns:
        PandaResult with the trial number, state, history and events.

    Example:
        >>> r = shoal.babysit(data="digits", params={"lr": 0.01}, epochs=5, storage="panda.db")  # doctest: +SKIP
        >>> r.history.last.val_acc  # doctest: +SKIP
    """
    from shoal.panda._trainer import Plateau
    from shoal.study._builtin import prepare_data
    from shoal.study._experiment import resolve_storage
    from shoal.study._tune import open_study

    if poll < 0:
        raise ConfigError(f"The 'poll' setting must be >= 0 seconds. Got {poll!r} instead.")
    settings = {"data": data, "preset": preset, "epochs": epochs, "seed": seed, "metric": metric, "device": device,
                "val_fraction": val_fraction, "target": target, "study": study, "storage": storage}
    exp = _experiment(settings)
    kind, code, config = _user_code(model, objective, params)
    plateau_obj = Plateau.parse(plateau)
    name = exp.study if exp.study else _default_name(exp, kind, code)
    # everything that can fail on user input runs before the storage is touched
    prepared = prepare_data(exp) if kind != "objective" else None
    st = open_study(resolve_storage(storage), name, exp.direction)
    _study_attrs(st, exp, {} if kind == "preset" else {kind: getattr(code, "__name__", repr(code))})
    settings = {k: v for k, v in settings.items() if k not in ("storage", "study")}
    settings.update(study=name, plateau=None if plateau_obj is None else [plateau_obj.patience, plateau_obj.factor],
                    checkpoints=str(checkpoint_root(storage)))
    if kind != "preset":  # preset trials keep the settings they always had (their resumes compare them)
        from shoal.panda._usercode import import_path

        settings.update(kind=kind, code=import_path(code), code_keys=sorted(params or {}))
    target_trial = _pick_resume(st, resume, config, settings)
    if target_trial is not None:
        same = target_trial.user_attrs["panda"]["settings"] == settings
        return _resume(st, target_trial, prepared if same else None, poll=poll, progress=progress, console=console,
                       on_epoch=on_epoch, code=code)
    trainer = _trainer(config, prepared, settings, plateau_obj, code=code)
    trainer.paused = paused
    if paused:
        trainer.event("pause", None, source="start")
    trial = st.ask()
    folder = trial_folder(settings["checkpoints"], name, trial.number)
    device = prepared.device if prepared is not None else "cpu"
    _start_attrs(st, trial._trial_id, trainer, settings, folder, device, lineage=None)
    return _drive(st, trial._trial_id, trial.number, trainer, folder, device, exp.metric, None,
                  poll=poll, progress=progress, console=console, on_epoch=on_epoch)


def fork(
    *,
    trial: int,
    epoch: int,
    params: Mapping[str, Any] | None = None,
    epochs: int | None = None,
    storage: str | None = None,
    study: str | None = None,
    plateau: str | tuple | None = None,
    paused: bool = False,
    poll: float = 0.2,
    progress: bool = True,
    console: Console | None = None,
    on_epoch: Callable[[EpochRecord], bool | None] | None = None,
    model: Any = None,
    objective: Callable[..., Any] | str | None = None,
) -> PandaResult:
    """Start a new trial from the checkpoint a babysat trial saved after ``epoch`` epochs, with edited
    training hyperparameters ("from epoch 12, try a tenth of the learning rate").

    A trial of the user's model or objective is forked with the same code: imported from the path its
    settings keep, or given again as ``model=`` / ``objective=``. Its module's own arguments cannot
    change; an objective's config may change in any key.

    The new trial has the parent's weights, optimizer moments, data position, curves and events up to
    that epoch. Changing ``lr`` restarts the schedule from the new value (the parent's manual changes
    to the learning rate are dropped); otherwise they carry over. Architecture and optimizer family
    cannot change. The lineage ``{parent_trial, parent_epoch, changes}`` is stored.

    Example:
        >>> shoal.panda.fork(trial=0, epoch=12, params={"lr": 1e-4}, storage="panda.db")  # doctest: +SKIP
    """
    from shoal.engine import normalize
    from shoal.panda._control import _open, find_trial
    from shoal.panda._trainer import Plateau
    from shoal.study._builtin import prepare_data

    st = _open(storage, study)
    parent = find_trial(st, trial)
    pinfo = parent.user_attrs["panda"]
    kind = pinfo["settings"].get("kind", "preset")
    code = _code_of(pinfo["settings"], model if kind == "model" else objective)
    changes = check_params(params) if kind == "preset" else dict(params or {})
    fixed = ARCHITECTURE if kind == "preset" else ("optimizer", *pinfo["settings"].get("code_keys", ())) \
        if kind == "model" else ()
    if kind == "model":
        from shoal.engine._functional import OPTIM_KEYS

        fixed = tuple(k for k in fixed if k not in OPTIM_KEYS or k == "optimizer")
    bad = [k for k in changes if k in fixed]
    if bad:
        raise ConfigError(f"A fork keeps the parent's model and optimizer, so '{bad[0]}' cannot change. Change "
                          "training settings (lr, momentum, betas, weight_decay, l1, dropout, batch_size, lr_decay...), "
                          "or start a new run with `shoal babysit`.")
    folder = Path(pinfo["folder"])
    found = {e: p for e, s, p in list_checkpoints(folder) if s == 0}
    if epoch not in found:
        raise ConfigError(f"Trial {trial} has no checkpoint after epoch {epoch!r}. Its checkpoints: epochs "
                          f"{', '.join(str(e) for e in sorted(found)) or 'none'} (in {folder}).")
    state = load_checkpoint(found[epoch])
    config = {**state["config"], **changes} if kind == "objective" else normalize({**state["config"], **changes})
    settings = dict(pinfo["settings"])
    settings["epochs"] = int(epochs) if epochs is not None else int(settings["epochs"])
    if settings["epochs"] <= epoch:
        raise ConfigError(f"The fork starts after epoch {epoch}, so 'epochs' must be larger than {epoch}. "
                          f"Got {settings['epochs']} instead.")
    if plateau is not None:
        p = Plateau.parse(plateau)
        settings["plateau"] = [p.patience, p.factor]
    exp = _experiment({**settings, "study": st.study_name})
    prepared = prepare_data(exp) if kind != "objective" else None
    lineage = {"parent_trial": int(trial), "parent_epoch": int(epoch), "changes": changes}
    # the same fork, left running by a run that was killed: the same command continues it (as
    # `babysit --resume --trial N` would), rather than starting it over as another trial
    same = [t for t in _interrupted(st) if t.user_attrs.get("lineage") == lineage
            and t.user_attrs["panda"]["settings"] == settings]
    if same:
        (console or _stderr()).print(
            f"[dim]continuing trial {same[0].number}: this fork, left by a run that stopped[/]", highlight=False)
        return _resume(st, same[0], prepared, poll=poll, progress=progress, console=console, on_epoch=on_epoch,
                       code=code)
    trainer = _trainer(config, prepared, settings, _plateau_of(settings), seed=int(parent.user_attrs["seed"]),
                       code=code)
    trainer.load_state_dict(state)
    if trainer.plateau is not None:
        trainer.plateau.wait = 0  # new settings get the whole patience (the best loss so far stays)
    if "lr" in changes:
        trainer.scale = 1.0
    trainer.paused = paused
    trainer.event("fork", changes, parent_trial=int(trial), parent_epoch=int(epoch))
    new = st.ask()
    new_folder = trial_folder(settings["checkpoints"], st.study_name, new.number)
    # The start state is the fork's first checkpoint: a fork killed before its first epoch resumes from it.
    save_checkpoint(trainer.state_dict(), new_folder, checkpoint_name(trainer.epoch))
    device = prepared.device if prepared is not None else "cpu"
    _start_attrs(st, new._trial_id, trainer, settings, new_folder, device, lineage=lineage)
    return _drive(st, new._trial_id, new.number, trainer, new_folder, device, exp.metric, lineage,
                  poll=poll, progress=progress, console=console, on_epoch=on_epoch)


# ---------------------------------------------------------------------- helpers
def _plateau_of(settings: Mapping[str, Any]):
    from shoal.panda._trainer import Plateau

    p = settings.get("plateau")
    return None if not p else Plateau(int(p[0]), float(p[1]))


def _trainer(config, prepared, settings, plateau, seed: int | None = None, code: Any = None) -> Trainer:
    from shoal.panda._trainer import Trainer

    seed = int(settings["seed"] if seed is None else seed)
    kind = settings.get("kind", "preset")
    if kind == "objective":
        from shoal.panda._usercode import ObjectiveTrainer

        return ObjectiveTrainer(code, config, epochs=int(settings["epochs"]), seed=seed, plateau=plateau)
    if len(prepared.folds) != 1:
        raise ConfigError("Babysitting trains on one split; k-fold runs belong to `shoal tune --folds`.")
    if kind == "model":
        return Trainer(config, prepared.folds[0], epochs=int(settings["epochs"]), seed=seed, plateau=plateau,
                       model=code, model_keys=settings.get("code_keys"))
    return Trainer(config, prepared.folds[0], family=settings["preset"], epochs=int(settings["epochs"]),
                   seed=seed, plateau=plateau)


def _user_code(model: Any, objective: Any, params: Mapping[str, Any] | None) -> tuple[str, Any, dict[str, Any]]:
    """("preset" | "model" | "objective", the user's code, the trial's config) for babysit's arguments."""
    from shoal.engine import normalize

    if model is not None and objective is not None:
        raise ConfigError("Pass either model= (your nn.Module, trained by shoal) or objective= (your training "
                          "function), not both.")
    if model is None and objective is None:
        return "preset", None, normalize(check_params(params))
    from shoal.panda._usercode import load_path

    code = model if model is not None else objective
    code = load_path(code) if isinstance(code, str) else code
    plain = dict(params or {})
    for key, value in plain.items():
        if isinstance(value, (list, tuple, dict)):
            raise ConfigError(f"Babysitting trains one configuration: the '{key}' parameter needs one value. "
                              f"Got {value!r} instead.")
    if model is not None:
        from torch import nn

        if isinstance(code, nn.Module) or not callable(code):
            raise ConfigError("The 'model' must be an nn.Module class or a builder build(config) -> nn.Module. "
                              f"Got {code!r} instead.")
        if isinstance(code, type):
            from shoal.engine._functional import check_read

            check_read(code, plain, what="The parameter(s)", waste="the run would record them and ignore them")
        return "model", code, normalize(plain)
    if not callable(code):
        raise ConfigError(f"The 'objective' must be a function fn(config, epochs, state=None). Got {code!r} instead.")
    from shoal.study._fidelity import has_fidelity

    if not has_fidelity(code):
        raise ConfigError("Babysitting calls the objective one epoch at a time: it must take a fidelity argument, "
                          "fn(config, epochs, state=None) -> (value, state).")
    return "objective", code, plain


def _default_name(exp, kind: str, code: Any) -> str:
    """``<data>-<preset>-panda``, ``<data>-<Model>-panda`` or ``<objective>-panda``."""
    if kind == "preset":
        return _study_name(exp)
    name = getattr(code, "__name__", None) or type(code).__name__
    return f"{name}-panda" if kind == "objective" else f"{exp.data}-{name}-panda"


def _code_of(settings: Mapping[str, Any], given: Any = None) -> Any:
    """The user's model or objective a babysat trial trains: ``given`` (the same again), or
    imported from the path its settings keep."""
    kind = settings.get("kind", "preset")
    if kind == "preset":
        return None
    if given is not None:
        from shoal.panda._usercode import load_path

        return load_path(given) if isinstance(given, str) else given
    if not settings.get("code"):
        raise ConfigError(f"This trial trains a user {kind} that other processes cannot import by name (defined "
                          f"inside a function or in a script run directly): pass {kind}= again, the same one.")
    from shoal.panda._usercode import load_path

    return load_path(settings["code"])


def _study_attrs(st: optuna.Study, exp, code: Mapping[str, str] | None = None) -> None:
    """The study's ``shoal`` settings, once; ``code`` names the user's model or objective."""
    if "shoal" not in st.user_attrs:
        st.set_user_attr("shoal", {"data": exp.data, "preset": exp.preset, "epochs": exp.epochs,
                                   "metric": exp.metric, "engine": "single", "mode": "panda", "seed": exp.seed,
                                   **(code or {})})


def _start_attrs(st, trial_id: int, trainer: Trainer, settings, folder: Path, device: str, lineage) -> None:
    from shoal.panda._control import ALIVE

    s = st._storage
    for key, value in {
        "config": trainer.cfg, "seed": trainer.seed, "engine": getattr(trainer, "engine", "single"), "device": device,
        "panda": {"settings": settings, "folder": str(folder)}, "events": trainer.events, "lineage": lineage,
        ALIVE: {"pid": _pid(), "host": socket.gethostname(), "time": time.time()},
    }.items():
        s.set_trial_user_attr(trial_id, key, value)


def _pid() -> int:
    import os

    return os.getpid()


def _interrupted(st: optuna.Study) -> list:
    """Babysat trials left RUNNING by a trainer that is gone, newest first."""
    from optuna.trial import TrialState

    from shoal.panda._control import is_alive

    out = [t for t in st.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
           if "panda" in t.user_attrs and not is_alive(t)]
    return sorted(out, key=lambda t: -t.number)


def _pick_resume(st, resume, config, settings):
    if resume is False:
        return None
    stale = _interrupted(st)
    if resume is None:
        same = [t for t in stale if t.user_attrs.get("config") == config
                and t.user_attrs["panda"]["settings"] == settings and not t.user_attrs.get("lineage")]
        return same[0] if same else None
    if resume is True:
        if not stale:
            raise ConfigError(f"The study {st.study_name!r} has no interrupted babysat trial to resume.")
        return stale[0]
    if isinstance(resume, bool) or not isinstance(resume, int):
        raise ConfigError(f"The 'resume' setting must be True, False, None or a trial number. Got {resume!r}.")
    match = [t for t in stale if t.number == resume]
    if not match:
        raise ConfigError(f"Trial {resume} of study {st.study_name!r} is not an interrupted babysat trial. "
                          f"Interrupted ones: {', '.join(str(t.number) for t in stale) or 'none'}.")
    return match[0]


def _resume(st, frozen, prepared_hint, *, poll, progress, console, on_epoch, code=None) -> PandaResult:
    """Continue an interrupted trial from its latest checkpoint. Learning-rate commands it applied
    after that checkpoint are applied again at the same epoch and step, so the numbers come out as
    if it had never stopped; pause, resume and checkpoint commands are not repeated."""
    from shoal.study._builtin import prepare_data

    info = frozen.user_attrs["panda"]
    settings, folder = info["settings"], Path(info["folder"])
    exp = _experiment({**settings, "study": st.study_name})
    kind = settings.get("kind", "preset")
    prepared = prepared_hint if prepared_hint is not None or kind == "objective" else prepare_data(exp)
    trainer = _trainer(frozen.user_attrs["config"], prepared, settings, _plateau_of(settings),
                       seed=int(frozen.user_attrs["seed"]), code=_code_of(settings, code))
    path = latest_checkpoint(folder)
    if path is not None:
        trainer.load_state_dict(load_checkpoint(path))
    known = set(trainer.applied)
    later = [e for e in frozen.user_attrs.get("events", []) if e.get("id") and e["id"] not in known]
    trainer.replay = sorted((e for e in later if e["what"] in ("set_lr", "multiply_lr")),
                            key=lambda e: (e["epoch"], e["step"]))
    trainer.applied += [e["id"] for e in later]  # replayed ones too: the channel must not apply them again
    trainer.event("resume", path.name if path else None, source="crash",
                  not_repeated=[{k: e.get(k) for k in ("what", "epoch", "step", "id")} for e in later
                                if e["what"] not in ("set_lr", "multiply_lr")])
    device = prepared.device if prepared is not None else "cpu"
    _start_attrs(st, frozen._trial_id, trainer, settings, folder, device, frozen.user_attrs.get("lineage"))
    return _drive(st, frozen._trial_id, frozen.number, trainer, folder, device, exp.metric,
                  frozen.user_attrs.get("lineage"), poll=poll, progress=progress, console=console, on_epoch=on_epoch)


@contextlib.contextmanager
def _deferred_sigint(channel):
    """The first Ctrl-C asks the trainer to stop at the next step boundary; a second one stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if channel.interrupted:
            raise KeyboardInterrupt
        channel.interrupted = True

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _drive(st, trial_id: int, number: int, trainer: Trainer, folder: Path, device: str, metric: str, lineage,
           *, poll, progress, console, on_epoch) -> PandaResult:
    from optuna.trial import TrialState

    from shoal.panda._control import Channel
    from shoal.panda._view import View
    from shoal.study._builtin import trial_attrs

    storage = st._storage
    view = View(f"{st.study_name} trial {number}", console=console, enabled=progress)
    channel = Channel(storage, trial_id, every=poll, on_poll=view.refresh)
    trainer.on_checkpoint = lambda tr: save_checkpoint(tr.state_dict(), folder,
                                                       checkpoint_name(tr.epoch, tr.step)).name

    def attrs() -> dict[str, Any]:
        engine = getattr(trainer, "engine", "single")  # "objective" for a user's objective
        a = trial_attrs([trainer.records], device, engine) if trainer.records else {"curves": {}, "epochs_run": 0}
        a.update(events=trainer.events, seconds=round(sum(r.seconds for r in trainer.records), 4))
        return a

    def epoch_done(record) -> bool | None:
        # The checkpoint first: a kill between the two leaves the storage behind, never ahead.
        save_checkpoint(trainer.state_dict(), folder, checkpoint_name(trainer.epoch))
        for key, value in attrs().items():
            storage.set_trial_user_attr(trial_id, key, value)
        value = record.metrics().get(metric)
        if value is not None:
            storage.set_trial_intermediate_value(trial_id, record.epoch, float(value))
        view.refresh(trainer)
        return on_epoch(record) if on_epoch is not None else None

    def control(tr: Trainer) -> None:
        channel(tr)
        if channel.interrupted:
            # Ctrl-C lands here, between two steps, where the state is whole: save it (mid-epoch
            # checkpoints resume exactly) and leave the trial RUNNING, so the same call resumes it.
            tr.apply("checkpoint", source="interrupt")
            storage.set_trial_user_attr(trial_id, "events", tr.events)
            raise KeyboardInterrupt

    result = dict(trial=number, study=st.study_name, lineage=lineage, config=dict(trainer.cfg), checkpoints=folder)
    channel.heartbeat()
    with view, _deferred_sigint(channel):
        view.refresh(trainer)
        try:
            trainer.run(control=control, on_epoch=epoch_done)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a failing run is recorded as failed, with its reason
            reason = str(exc) if isinstance(exc, TrialFailed) else f"{type(exc).__name__}: {exc}"
            for key, value in {**attrs(), "fail_reason": reason[:2000], "traceback": traceback.format_exc()[-4000:]}.items():
                storage.set_trial_user_attr(trial_id, key, value)
            st.tell(number, state=TrialState.FAIL)
            return PandaResult(state="fail", value=None, history=trainer.history(), events=trainer.events,
                               fail_reason=reason, **result)
    if channel.lost:
        return PandaResult(state="lost", value=None, history=trainer.history(), events=trainer.events,
                           fail_reason="the trial was finished by another process", **result)
    for key, value in {**attrs(), "stopped_by_user": trainer.stopped and not trainer.done}.items():
        storage.set_trial_user_attr(trial_id, key, value)
    if not trainer.records:
        reason = "stopped before the first epoch ended"
        storage.set_trial_user_attr(trial_id, "fail_reason", reason)
        st.tell(number, state=TrialState.FAIL)
        return PandaResult(state="fail", value=None, history=trainer.history(), events=trainer.events,
                           fail_reason=reason, **result)
    value = trainer.records[-1].metrics()[metric]
    st.tell(number, float(value))
    return PandaResult(state="complete", value=float(value), history=trainer.history(), events=trainer.events,
                       **result)


def _stderr():
    from rich.console import Console

    return Console(stderr=True)
