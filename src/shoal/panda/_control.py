"""Live control of a babysat trial through the study's own storage: no server, any process, any machine
that reaches the storage.

A command is one trial user attribute, ``panda_cmd:<time ns>:<pid>`` -> ``{"what", "value", "time"}``,
written by ``send`` (Optuna lets any process set attributes of a RUNNING trial). The trainer polls its
trial between steps (every ``poll`` seconds), applies the commands it has not applied yet in the order
they were sent, and records each as an event in the trial's ``events`` attribute, with the command's id.
The trainer also keeps ``panda_alive`` = ``{"pid", "host", "time"}`` fresh, so a command sent to a trial
whose trainer died can say so (the command waits and applies when the run is resumed).
"""

from __future__ import annotations

import math
import os
import socket
import time
from typing import TYPE_CHECKING, Any, Callable

from shoal._errors import ConfigError

if TYPE_CHECKING:
    import optuna

    from shoal.panda._trainer import Trainer

__all__ = ["COMMANDS", "Channel", "checkpoint", "is_alive", "multiply_lr", "pause", "resume", "send", "set_lr", "stop"]

# What a control command may ask, and whether it carries a positive number.
COMMANDS = {"set_lr": True, "multiply_lr": True, "pause": False, "resume": False, "stop": False,
            "checkpoint": False}
PREFIX = "panda_cmd:"
ALIVE = "panda_alive"
HEARTBEAT_EVERY = 2.0  # seconds between liveness writes
STALE_AFTER = 60.0  # a trainer on another host that has not written for this long is taken for dead


def is_alive(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trainer is still working on ``trial``: its process on this host exists, or (another
    host) it wrote its heartbeat within ``STALE_AFTER`` seconds."""
    info = trial.user_attrs.get(ALIVE)
    if not info:
        return False
    if info.get("host") == socket.gethostname():
        try:
            os.kill(int(info["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return time.time() - float(info.get("time", 0)) < STALE_AFTER


def _open(storage: Any, study: str | None) -> optuna.Study:
    from shoal.study._experiment import open_stored

    return open_stored(storage, study)


def find_trial(study: optuna.Study, trial: int | None) -> optuna.trial.FrozenTrial:
    """A babysat trial by number; None picks the only running babysat trial of the study."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    babysat = [t for t in trials if "panda" in t.user_attrs]
    if trial is None:
        running = [t for t in babysat if t.state == TrialState.RUNNING]
        if not running:
            done = ", ".join(str(t.number) for t in babysat[-5:])
            raise ConfigError(f"No babysat trial of study {study.study_name!r} is running now"
                              + (f" (babysat before: {done}; `shoal fork --trial N --epoch E` goes on from one "
                                 f"of their checkpoints)" if done else "")
                              + ". Start one with `shoal babysit`.")
        if len(running) > 1:
            listed = ", ".join(str(t.number) for t in running)
            raise ConfigError(f"The study {study.study_name!r} has {len(running)} running babysat trials ({listed}). "
                              "Pick one with --trial N.")
        return running[0]
    found = [t for t in trials if t.number == trial]
    if not found:
        raise ConfigError(f"No trial {trial!r} in study {study.study_name!r}. Babysat trials there: "
                          f"{', '.join(str(t.number) for t in babysat) or 'none'}.")
    if "panda" not in found[0].user_attrs:
        raise ConfigError(f"Trial {trial} of study {study.study_name!r} was not started by `shoal babysit`; "
                          "only babysat trials take commands.")
    return found[0]


def send(storage: Any, study: str | None, trial: int | None, what: str, value: float | None = None,
         wait: float = 0.0) -> dict[str, Any]:
    """Send one command to a running babysat trial.

    Args:
        storage: the study's storage (as for ``shoal tune``: a file, a URL, or None for shoal.db).
        study: the study name (None when the storage holds one study).
        trial: the trial number (None: the study's only running babysat trial).
        what: set_lr, multiply_lr, pause, resume, stop or checkpoint.
        value: the learning rate (set_lr) or factor (multiply_lr): a positive number.
        wait: seconds to wait for the trainer to apply it.

    Returns:
        ``{"id", "trial", "alive", "event"}``: ``event`` is the recorded event once applied (None if not
        yet within ``wait``); ``alive`` False means no trainer works on the trial now: the command waits
        for ``shoal babysit`` to resume it.

    Raises:
        ConfigError: unknown command, bad value, unknown trial or a trial that is not running; nothing
            is written then.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    if what not in COMMANDS:
        raise ConfigError(f"Unknown command {what!r}. Commands: {', '.join(COMMANDS)}.")
    if COMMANDS[what]:
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0
        if not ok:
            noun = "learning rate" if what == "set_lr" else "factor"
            raise ConfigError(f"The {noun} of '{what}' must be a positive number. Got {value!r} instead.")
        value = float(value)
    elif value is not None:
        raise ConfigError(f"The command '{what}' takes no value. Got {value!r}.")
    s = _open(storage, study)
    t = find_trial(s, trial)
    if t.state != TrialState.RUNNING:
        raise ConfigError(
            f"Trial {t.number} of study {s.study_name!r} is {t.state.name.lower()}, not running: commands go to "
            f"running trials. To go on from one of its checkpoints: shoal fork --trial {t.number} --epoch E."
        )
    key = f"{PREFIX}{time.time_ns():020d}:{os.getpid()}"
    try:
        s._storage.set_trial_user_attr(t._trial_id, key, {"what": what, "value": value, "time": time.time()})
    except UpdateFinishedTrialError:
        raise ConfigError(f"Trial {t.number} finished while the command was being sent; nothing was changed.") from None
    out = {"id": key, "trial": t.number, "alive": is_alive(t), "event": None}
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        ft = s._storage.get_trial(t._trial_id)
        done = [e for e in ft.user_attrs.get("events", []) if e.get("id") == key]
        if done:
            out["event"] = done[0]
            break
        if time.monotonic() >= deadline or ft.state != TrialState.RUNNING:
            break
        time.sleep(0.05)
    return out


def set_lr(storage: Any, study: str | None, trial: int | None, value: float, wait: float = 0.0) -> dict[str, Any]:
    """Set the learning rate of a running babysat trial from its next step (the schedule's decay
    continues relative to it). See ``send``."""
    return send(storage, study, trial, "set_lr", value, wait)


def multiply_lr(storage: Any, study: str | None, trial: int | None, factor: float, wait: float = 0.0) -> dict[str, Any]:
    """Multiply the learning rate of a running babysat trial by ``factor``. See ``send``."""
    return send(storage, study, trial, "multiply_lr", factor, wait)


def pause(storage: Any, study: str | None, trial: int | None, wait: float = 0.0) -> dict[str, Any]:
    """Pause training before its next step (the trainer keeps listening). See ``send``."""
    return send(storage, study, trial, "pause", None, wait)


def resume(storage: Any, study: str | None, trial: int | None, wait: float = 0.0) -> dict[str, Any]:
    """Resume a paused trial. See ``send``."""
    return send(storage, study, trial, "resume", None, wait)


def stop(storage: Any, study: str | None, trial: int | None, wait: float = 0.0) -> dict[str, Any]:
    """Stop before the next step; the trial completes with its last finished epoch. See ``send``."""
    return send(storage, study, trial, "stop", None, wait)


def checkpoint(storage: Any, study: str | None, trial: int | None, wait: float = 0.0) -> dict[str, Any]:
    """Save a checkpoint before the next step (mid-epoch ones resume exactly too). See ``send``."""
    return send(storage, study, trial, "checkpoint", None, wait)


class Channel:
    """The trainer's end: called before every step, it reads the trial's commands every ``every``
    seconds (0: before every step), applies new ones, records them, and blocks while paused."""

    def __init__(self, storage: Any, trial_id: int, *, every: float = 0.2,
                 on_poll: Callable[[Trainer], None] | None = None) -> None:
        self.storage = storage
        self.trial_id = trial_id
        self.every = float(every)
        self.on_poll = on_poll
        self.lost = False  # the trial was finished by someone else
        self.interrupted = False  # Ctrl-C: stop at the next step boundary
        self._last = -math.inf
        self._beat = -math.inf

    def __call__(self, trainer: Trainer) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            return
        self.poll(trainer)
        while trainer.paused and not trainer.stopped and not self.interrupted:
            time.sleep(max(self.every, 0.05))
            self.poll(trainer)

    def poll(self, trainer: Trainer) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        self._last = time.monotonic()
        try:
            ft = self.storage.get_trial(self.trial_id)
            if ft.state.is_finished():
                raise UpdateFinishedTrialError("finished")
            pending = sorted(k for k in ft.user_attrs if k.startswith(PREFIX) and k not in trainer.applied)
            for key in pending:
                cmd = ft.user_attrs[key]
                trainer.applied.append(key)
                try:
                    trainer.apply(cmd.get("what"), cmd.get("value"), id=key, sent=cmd.get("time"))
                except ConfigError as exc:  # written by hand around ``send``: record, do not crash the run
                    trainer.event("rejected", None, id=key, reason=str(exc))
            if pending:
                self.storage.set_trial_user_attr(self.trial_id, "events", trainer.events)
            if self._last - self._beat >= HEARTBEAT_EVERY:
                self.heartbeat()
        except UpdateFinishedTrialError:
            self.lost = True
            trainer.stopped = True
            trainer.paused = False
        if self.on_poll is not None:
            self.on_poll(trainer)

    def heartbeat(self) -> None:
        self._beat = time.monotonic()
        self.storage.set_trial_user_attr(self.trial_id, ALIVE,
                                         {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()})
