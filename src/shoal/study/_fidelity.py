"""User objectives with a fidelity argument: ``fn(config, epochs, state=None) -> (value, state)``.

Such an objective trains ``config`` for ``epochs`` more epochs, starting from ``state`` (None:
from scratch), and returns the metric and the new state (anything: a dict of tensors, a model). It
is how user code gets every strategy:

* successive halving / Hyperband / median pruning: called one epoch at a time, reported to the
  pruner after each; a stopped trial ends, a promoted one goes on from its state;
* PBT: each member's state is kept in memory, and a copy starts from a deep copy of its parent's
  state (``FunctionPool`` gives ``run_pbt`` the pool interface the population engine has);
* coarse-to-fine and every sampler: as for any objective.

Returning a bare value (no state) works for everything but PBT, which needs states to copy.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
import traceback
from typing import TYPE_CHECKING, Any, Callable, Hashable, Mapping

from shoal._errors import ConfigError

if TYPE_CHECKING:
    from shoal.study._experiment import Experiment
    from shoal.study._runner import StudyRunner

__all__ = ["FunctionPool", "has_fidelity", "run_fidelity"]


def has_fidelity(objective: Callable[..., Any]) -> bool:
    """Whether ``objective`` takes an ``epochs`` argument (a fidelity objective)."""
    try:
        return "epochs" in inspect.signature(objective).parameters
    except (TypeError, ValueError):
        return False


def _call(objective: Callable, config: Mapping[str, Any], epochs: int, state: Any) -> tuple[float, Any]:
    out = objective(dict(config), epochs, state)
    value, new_state = (out if isinstance(out, tuple) and len(out) == 2 else (out, None))
    value = float(value)
    return value, new_state


class _Record:
    """An epoch record for a user objective: its value is both "loss" curves (for the gap and
    divergence checks, which see the same number) and the reported metric."""

    def __init__(self, epoch: int, value: float, seconds: float) -> None:
        self.epoch, self.seconds = epoch, seconds
        self.train_loss = self.val_loss = self.value = value
        self.train_acc = self.val_acc = None
        self.lr = math.nan


class FunctionPool:
    """The pool interface (add / remove / run_epoch / snapshot / close) over a fidelity objective:
    each member is a config and the state its last call returned."""

    def __init__(self, objective: Callable[..., Any]) -> None:
        self.objective = objective
        self.members: dict[Hashable, dict[str, Any]] = {}

    def add(self, key: Hashable, config: Mapping[str, Any], seed: int, fold: int, epochs: int,
            start: Mapping[str, Any] | None = None) -> None:
        self.members[key] = {"config": dict(config), "state": copy.deepcopy(start["state"]) if start else None,
                             "epoch": int(start["epoch"]) if start else 0}

    def remove(self, key: Hashable) -> None:
        self.members.pop(key, None)

    def __len__(self) -> int:
        return len(self.members)

    def snapshot(self, key: Hashable) -> dict[str, Any]:
        m = self.members[key]
        if m["state"] is None and m["epoch"] > 0:
            raise ConfigError("PBT copies a member's training state, but the objective returned none. Return "
                              "(value, state) from fn(config, epochs, state), with state what training needs "
                              "to go on (e.g. the model's and optimizer's state_dicts).")
        return {"state": copy.deepcopy(m["state"]), "epoch": m["epoch"]}

    def run_epoch(self) -> tuple[dict, dict]:
        records, failed = {}, {}
        for key, m in list(self.members.items()):
            start = time.perf_counter()
            try:
                value, m["state"] = _call(self.objective, m["config"], 1, m["state"])
            except Exception as exc:  # this member fails; the others go on
                failed[key] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}"
                continue
            m["epoch"] += 1
            records[key] = _Record(m["epoch"], value, time.perf_counter() - start)
        return records, failed

    def close(self) -> None:
        self.members.clear()


def run_fidelity(runner: StudyRunner, objective: Callable[..., Any], exp: Experiment) -> None:
    """Each trial one epoch at a time, reported after each; the study's pruner may stop it."""
    import optuna

    while (job := runner.ask()) is not None:
        state, curve = None, []
        try:
            for epoch in range(1, exp.epochs + 1):
                value, state = _call(objective, job.config, 1, state)
                if not math.isfinite(value):
                    raise ValueError(f"the objective returned {value} at epoch {epoch}")
                curve.append(value)
                if runner.report(job, epoch, value):
                    raise optuna.TrialPruned()
        except optuna.TrialPruned:
            runner.prune(job, {"curves": {"value": curve}, "epochs_run": len(curve)})
            continue
        except KeyboardInterrupt:
            runner.interrupt(job)
            raise
        except Exception as exc:  # a failing trial is recorded and the study goes on
            runner.fail(job, f"{type(exc).__name__}: {exc}", {"traceback": traceback.format_exc()[-4000:],
                                                              "curves": {"value": curve}})
            continue
        runner.complete(job, curve[-1], {"curves": {"value": curve}, "epochs_run": len(curve)})
