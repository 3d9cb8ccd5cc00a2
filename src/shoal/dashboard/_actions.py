"""The dashboard's controls: panda mode's own functions, called with checked values.

Learning-rate changes, pause, resume, stop and checkpoint go through ``shoal.panda.send`` (the same
storage channel as ``shoal control``). A fork trains, so it runs as its own ``shoal fork`` process
(started in a new session: it outlives the dashboard, and a crash of one leaves the other alone).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal._errors import ConfigError

if TYPE_CHECKING:
    from shoal.dashboard._data import Source

__all__ = ["control", "start_fork"]

# The dashboard's name for a command -> panda's command, and whether it takes a positive number.
CONTROLS = {"set_lr": True, "multiply_lr": True, "pause": False, "resume": False, "stop": False, "checkpoint": False}
_WORD = re.compile(r"^[A-Za-z0-9_.+-]+$")


def _number(value: Any, what: str) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0
    if not ok:
        noun = "learning rate" if what == "set_lr" else "factor"
        raise ConfigError(f"The {noun} of '{what}' must be a positive number. Got {value!r} instead.")
    return float(value)


def _trial_number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"The trial must be a whole number >= 0. Got {value!r} instead.")
    return value


def control(src: Source, study: Any, trial: Any, what: Any, value: Any = None, wait: float = 2.0) -> dict[str, Any]:
    """Send one command to a running babysat trial and wait up to ``wait`` s for it to be applied.

    Returns panda's answer: ``{"id", "trial", "alive", "event"}``.
    """
    from shoal.panda import send

    if what not in CONTROLS:
        raise ConfigError(f"Unknown command {what!r}. Commands: {', '.join(CONTROLS)}.")
    number = _trial_number(trial)
    value = _number(value, what) if CONTROLS[what] else None
    from shoal.panda._control import find_trial, is_alive

    st = src.study(study)  # an unknown study is a 404, before anything is written
    # No trainer, nothing to wait for: the command is stored and applies when the run resumes.
    alive = is_alive(find_trial(st, number))
    return send(src.spec, study, number, what, value, wait=wait if alive else 0.0)


def _param_args(params: Any) -> list[str]:
    """``-p name=value`` arguments for ``shoal fork``: known training parameters, single plain values."""
    from shoal.panda._babysit import ARCHITECTURE, check_params

    if params is None:
        return []
    if not isinstance(params, dict):
        raise ConfigError(f"Fork parameters must be an object such as {{\"lr\": 0.001}}. Got {params!r} instead.")
    params = check_params(params)
    out = []
    for key, value in params.items():
        if key in ARCHITECTURE:
            raise ConfigError(f"A fork keeps the parent's model and optimizer, so '{key}' cannot change.")
        if isinstance(value, bool) or (isinstance(value, str) and _WORD.match(value)):
            text = str(value).lower() if isinstance(value, bool) else value
        elif isinstance(value, (int, float)) and math.isfinite(value):
            text = repr(value)
        else:
            raise ConfigError(f"The fork parameter '{key}' must be a number or a plain word. Got {value!r} instead.")
        out += ["-p", f"{key}={text}"]
    return out


def start_fork(src: Source, study: Any, trial: Any, epoch: Any, params: Any = None, epochs: Any = None,
               wait: float = 30.0) -> dict[str, Any]:
    """Start ``shoal fork`` from trial ``trial``'s checkpoint after ``epoch`` epochs, in its own
    process; wait up to ``wait`` s for its new trial to appear in the study.

    Returns ``{"pid", "trial"}`` (``trial`` None if the new trial did not appear in time).

    Raises:
        ConfigError: a bad value, a trial that is not babysat, no such checkpoint, or the fork
            process ended with an error (its message).
    """
    from shoal.panda._checkpoint import list_checkpoints
    from shoal.panda._control import find_trial

    number = _trial_number(trial)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ConfigError(f"The fork's epoch must be a whole number >= 0. Got {epoch!r} instead.")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= epoch):
        raise ConfigError(f"'epochs' must be a whole number larger than the fork's epoch {epoch}. Got {epochs!r}.")
    extra = _param_args(params)
    st = src.study(study)
    parent = find_trial(st, number)
    folder = parent.user_attrs["panda"].get("folder")
    epochs_saved = sorted({e for e, s, _ in list_checkpoints(Path(folder))} if isinstance(folder, str) else set())
    if epoch not in epochs_saved:
        raise ConfigError(f"Trial {number} has no checkpoint after epoch {epoch}. Its checkpoints: epochs "
                          f"{', '.join(map(str, epochs_saved)) or 'none'}.")
    before = {t.number for t in st.get_trials(deepcopy=False)}
    args = [sys.executable, "-m", "shoal", "fork", f"--trial={number}", f"--epoch={epoch}", f"--study={study}",
            "--quiet", *extra]
    if src.spec is not None:
        args.append(f"--storage={src.spec}")
    if epochs is not None:
        args.append(f"--epochs={epochs}")
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        new = [t for t in st.get_trials(deepcopy=False) if t.number not in before
               and (t.user_attrs.get("lineage") or {}).get("parent_trial") == number]
        if new:
            return {"pid": proc.pid, "trial": new[0].number}
        if proc.poll() is not None:
            log.seek(0)
            text = " ".join(log.read().decode(errors="replace").split())
            if proc.returncode != 0:
                raise ConfigError(f"shoal fork ended with code {proc.returncode}: {text[-600:] or 'no message'}")
        time.sleep(0.2)
    return {"pid": proc.pid, "trial": None}
