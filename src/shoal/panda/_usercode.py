"""Panda mode with the user's own code: a fidelity objective trained one epoch at a time, and how a
babysat trial finds the user's model or objective again (resume, fork) by its import path.

``ObjectiveTrainer`` drives ``fn(config, epochs, state=None) -> (value, state)`` with one call per
epoch and gives ``_babysit`` the interface of ``Trainer``: commands apply between epochs (a new
learning rate reaches the function as ``config["lr"]``), ``state_dict`` holds the function's state
(checkpointed each epoch), ``load_state_dict`` continues from one (resume, fork).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping

from shoal._errors import ConfigError, Diverged
from shoal.panda._trainer import CHECKPOINT_FORMAT, Plateau, Trainer

__all__ = ["ObjectiveTrainer", "import_path", "load_path"]


def import_path(obj: Any) -> str | None:
    """``"module:qualified.name"`` for a class or function another process can import, else None
    (defined inside a function, or in a script run as ``__main__``)."""
    module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not name or "<" in name or module == "__main__":
        return None
    return f"{module}:{name}"


def load_path(text: str) -> Any:
    """The object named by ``"package.module:name"`` or ``"path/to/file.py:name"``."""
    module_name, _, name = str(text).rpartition(":")
    if not module_name or not name:
        raise ConfigError(f"A model or objective is named as 'module:name' or 'file.py:name'. Got {text!r} instead.")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ConfigError(f"No file {module_name!r} (from {text!r}).")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules.setdefault(path.stem, module)
            spec.loader.exec_module(module)
        else:
            module = _import_module(module_name)
        obj = module
        for part in name.split("."):
            obj = getattr(obj, part)
    except ConfigError:
        raise
    except ModuleNotFoundError as exc:
        raise ConfigError(f"Cannot import {text!r}: {exc}. Run from the folder that holds it, name the file "
                          f"(path/to/{module_name.replace('.', '/')}.py:{name}), or add its folder to "
                          f"PYTHONPATH.") from None
    except Exception as exc:
        raise ConfigError(f"Cannot import {text!r}: {type(exc).__name__}: {exc}.") from None
    return obj


def _import_module(name: str) -> Any:
    """``importlib.import_module``, also finding a module in the current folder, as ``python -m``
    and ``python script.py`` users expect (a console script's path holds only its own folder)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        top = name.split(".")[0]
        here = Path.cwd()
        if exc.name != top or not ((here / f"{top}.py").is_file() or (here / top / "__init__.py").is_file()):
            raise
        if str(here) in sys.path:
            raise
        sys.path.insert(0, str(here))
        return importlib.import_module(name)


class ObjectiveTrainer(Trainer):
    """A fidelity objective, one epoch per call, with panda's live control and checkpoints.

    The objective returns the epoch's validation loss (a number), or a dict of the epoch's
    measures by the names of ``EpochRecord`` (``val_loss`` required; ``train_loss``, ``val_acc``,
    ``train_acc`` optional), with the state to continue from.

    Args:
        objective: ``fn(config, epochs, state=None) -> (value, state)``.
        config: the values the objective gets; ``config["lr"]`` follows ``set_lr`` / ``multiply_lr``.
        epochs: epochs to train in all.
        seed: recorded with the trial (the objective seeds itself).
        plateau: reduce-on-plateau on the validation loss (needs ``lr`` in the config), or None.

    Example:
        >>> t = ObjectiveTrainer(fn, {"lr": 0.01}, epochs=5)  # doctest: +SKIP
        >>> t.run(); t.history().last.val_loss  # doctest: +SKIP
    """

    engine = "objective"  # what the trial records as its engine

    def __init__(self, objective: Callable[..., Any], config: Mapping[str, Any], *, epochs: int = 10, seed: int = 0,
                 plateau: Plateau | None = None) -> None:
        self.objective = objective
        self.cfg = dict(config)
        self.family = "objective"
        self.epochs, self.seed, self.plateau = int(epochs), int(seed), plateau
        self.state: Any = None  # what the objective returned last
        self.epoch, self.step, self.scale = 0, 0, 1.0
        self.paused = self.stopped = False
        self.records, self.events, self.applied, self.replay = [], [], [], []
        self.on_checkpoint = None
        self.last_lr = self.lr

    @property
    def lr(self) -> float:
        try:
            return self.base_lr() * self.scale
        except ConfigError:
            return math.nan

    def base_lr(self) -> float:
        lr = self.cfg.get("lr")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)):
            raise ConfigError("This objective's config has no learning rate: give one (-p lr=0.01) to change it "
                              "while it trains.")
        return float(lr)

    @property
    def steps_per_epoch(self) -> int:
        return 1

    def state_dict(self) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "kind": "objective", "config": dict(self.cfg), "epochs": self.epochs,
                "seed": self.seed, "epoch": self.epoch, "step": 0, "scale": self.scale,
                "records": [asdict(r) for r in self.records], "events": [dict(e) for e in self.events],
                "applied": list(self.applied),
                "plateau": None if self.plateau is None else {"best": self.plateau.best, "wait": self.plateau.wait},
                "state": self.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``; the config stays this trainer's (a fork may change it)."""
        from shoal.engine import EpochRecord

        if state.get("format") != CHECKPOINT_FORMAT or state.get("kind") != "objective":
            raise ConfigError("This checkpoint was not written for an objective function: resume or fork it as "
                              "it was started (preset or model=).")
        self.epoch, self.scale, self.state = int(state["epoch"]), float(state["scale"]), state["state"]
        self.records = [EpochRecord(**r) for r in state["records"]]
        self.events = [dict(e) for e in state["events"]]
        self.applied = list(state["applied"])
        if self.plateau is not None and state.get("plateau"):
            self.plateau.best, self.plateau.wait = state["plateau"]["best"], state["plateau"]["wait"]
        self.last_lr = self.records[-1].lr if self.records else self.lr

    def run(self, *, control: Callable[[Trainer], None] | None = None,
            on_epoch: Callable[[Any], bool | None] | None = None):
        """Call the objective once per epoch until ``epochs`` are done or a stop; ``control`` runs
        before each call (commands, pause), ``on_epoch`` after each (True stops)."""
        while not self.done and not self.stopped:
            if self.replay:
                self._replay_due()
            if control is not None:
                control(self)
            if self.stopped:
                break
            config = dict(self.cfg)
            if "lr" in config:
                config["lr"] = self.last_lr = self.lr
            start = time.perf_counter()
            out = self.objective(config, 1, self.state)
            value, self.state = out if isinstance(out, tuple) and len(out) == 2 else (out, None)
            record = self._record(value, time.perf_counter() - start)
            if not all(math.isfinite(v) for v in (record.train_loss, record.val_loss)):
                raise Diverged(f"the objective returned {value!r} at epoch {record.epoch}")
            self.records.append(record)
            self.epoch += 1
            self._plateau(record.val_loss)
            if on_epoch is not None and on_epoch(record):
                self.stopped = True
        return self.history()

    def _record(self, value: Any, seconds: float):
        from shoal.engine import EpochRecord

        if isinstance(value, Mapping):
            if "val_loss" not in value:
                raise ConfigError(f"The objective returned {dict(value)!r}: a dict of measures needs 'val_loss' "
                                  "(and may give train_loss, val_acc, train_acc).")
            m = {k: float(v) for k, v in value.items() if k in ("train_loss", "val_loss", "val_acc", "train_acc")}
        else:
            m = {"val_loss": float(value)}
        return EpochRecord(epoch=self.epoch + 1, train_loss=m.get("train_loss", m["val_loss"]),
                           train_acc=m.get("train_acc"), val_loss=m["val_loss"], val_acc=m.get("val_acc"),
                           lr=self.lr, seconds=seconds)
