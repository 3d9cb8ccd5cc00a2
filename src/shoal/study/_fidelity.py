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

Resume: after each epoch the trial's state, epoch and curve are saved beside the storage
(``.<study>.trial-<N>.state.pt``, written atomically; removed when the trial ends). A study killed
mid-trial (Ctrl-C, SIGKILL) runs that trial again as a retry (see ``StudyRunner``), and the retry
goes on from the saved epoch with the saved state: the epochs already trained are not trained again.
An objective that returns no state starts its retries from epoch 0.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import os
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Hashable, Mapping

from shoal._errors import ConfigError

if TYPE_CHECKING:
    from shoal.study._experiment import Experiment
    from shoal.study._runner import StudyRunner

__all__ = ["FunctionPool", "StateFiles", "has_fidelity", "run_fidelity"]

log = logging.getLogger("shoal")


def has_fidelity(objective: Callable[..., Any]) -> bool:
    """Whether ``objective`` takes an ``epochs`` argument (a fidelity objective)."""
    try:
        return "epochs" in inspect.signature(objective).parameters
    except (TypeError, ValueError):
        return False


def _call(objective: Callable, config: Mapping[str, Any], epochs: int, state: Any,
          metric: str = "value") -> tuple[float, Any]:
    """One call: its value (a number, or ``metric`` of a dict) and the state it returned."""
    out = objective(dict(config), epochs, state)
    value, new_state = (out if isinstance(out, tuple) and len(out) == 2 else (out, None))
    if isinstance(value, Mapping):
        from shoal.study._runner import named_values

        value = named_values(value, [metric])[0][0]
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

    def __init__(self, objective: Callable[..., Any], metric: str = "value") -> None:
        self.objective = objective
        self.metric = metric
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
                value, m["state"] = _call(self.objective, m["config"], 1, m["state"], self.metric)
            except Exception as exc:  # this member fails; the others go on
                failed[key] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}"
                continue
            m["epoch"] += 1
            records[key] = _Record(m["epoch"], value, time.perf_counter() - start)
        return records, failed

    def close(self) -> None:
        self.members.clear()


class StateFiles:
    """Each running trial's last state, saved after every epoch beside the study's storage.

    ``save`` writes ``{"epoch", "state", "curve"}`` to a temporary file, then ``os.replace``: a kill
    leaves the previous epoch's file whole. ``take`` hands a retry (a trial with ``retry_of``) the
    file of the trial it repeats, renamed to the retry's own. A state that cannot be pickled turns
    saving off for the study, with one warning.
    """

    def __init__(self, storage: Any, study: str) -> None:
        from shoal.study._pbt import checkpoint_path

        pbt = checkpoint_path(storage, study)  # the folder and file-name stem PBT's checkpoint uses
        self.folder, self.stem = pbt.parent, pbt.name.removesuffix(".pbt.pt")
        self.enabled = True

    def path(self, number: int) -> Path:
        return self.folder / f"{self.stem}.trial-{int(number)}.state.pt"

    def save(self, number: int, epoch: int, state: Any, curve: list[float]) -> None:
        if not self.enabled or state is None:
            return
        import torch

        final = self.path(number)
        tmp = final.with_name(f"{final.name}.{os.getpid()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            torch.save({"epoch": int(epoch), "state": state, "curve": list(curve)}, tmp)
            os.replace(tmp, final)
        except Exception as exc:  # an unpicklable state: the study goes on, without resume
            tmp.unlink(missing_ok=True)
            self.enabled = False
            log.warning("the objective's state cannot be saved (%s: %s): an interrupted trial will start again "
                        "from epoch 0", type(exc).__name__, str(exc).split("\n")[0][:200])

    def take(self, number: int, retry_of: int | None) -> dict[str, Any] | None:
        """The saved epoch, state and curve of the trial ``number`` repeats (None: start anew)."""
        if retry_of is None:
            return None
        old = self.path(retry_of)
        if not old.is_file():
            return None
        import torch

        try:
            saved = torch.load(old, map_location="cpu", weights_only=False)  # our own file
        except Exception as exc:
            log.warning("trial %d starts from epoch 0: the state of trial %d cannot be read (%s)", number,
                        retry_of, exc)
            return None
        os.replace(old, self.path(number))  # the retry owns it now (a kill before its first epoch keeps it)
        return saved

    def drop(self, number: int) -> None:
        self.path(number).unlink(missing_ok=True)


def run_fidelity(runner: StudyRunner, objective: Callable[..., Any], exp: Experiment) -> None:
    """Each trial one epoch at a time, reported after each; the study's pruner may stop it.

    The state after each epoch is saved (``StateFiles``); a retry of an interrupted trial goes on
    from its last saved epoch. A Ctrl-C stops after the running epoch (and its save).
    """
    import optuna

    files = StateFiles(exp.storage, runner.study.study_name)
    stateless_warned = False
    while (job := runner.ask()) is not None:
        state, curve = None, []
        saved = files.take(job.number, job.trial.user_attrs.get("retry_of"))
        if saved is not None:
            state, curve = saved["state"], list(saved["curve"])[: int(saved["epoch"])]
            for epoch, value in enumerate(curve, 1):  # the retry's curve starts with the epochs done
                runner.report(job, epoch, value, ask_pruner=False)
            job.trial.set_user_attr("resumed_from_epoch", len(curve))
            log.info("trial %d goes on from epoch %d of trial %d", job.number, len(curve),
                     job.trial.user_attrs["retry_of"])
        try:
            for epoch in range(len(curve) + 1, exp.epochs + 1):
                value, state = _call(objective, job.config, 1, state, runner.objectives[0])
                if state is None and exp.epochs > 1 and not stateless_warned:
                    stateless_warned = True
                    log.warning("the fidelity objective returned no state: each call trains from scratch, so a "
                                "trial's epochs do not build on each other. Return (value, state) with what "
                                "training needs to go on (the model and optimizer).")
                if not math.isfinite(value):
                    raise ValueError(f"the objective returned {value} at epoch {epoch}")
                curve.append(value)
                files.save(job.number, epoch, state, curve)
                if runner.report(job, epoch, value):
                    raise optuna.TrialPruned()
                runner.check_stop()  # a Ctrl-C stops here, with this epoch saved
                if epoch < exp.epochs and runner.past_deadline():  # so does the timeout
                    break
        except optuna.TrialPruned:
            files.drop(job.number)
            runner.prune(job, {"curves": {"value": curve}, "epochs_run": len(curve)})
            continue
        except KeyboardInterrupt:  # the saved state stays for the retry
            runner.interrupt(job)
            raise
        except Exception as exc:  # a failing trial is recorded and the study goes on
            files.drop(job.number)
            runner.fail(job, f"{type(exc).__name__}: {exc}", {"traceback": traceback.format_exc()[-4000:],
                                                              "curves": {"value": curve}})
            continue
        files.drop(job.number)
        if len(curve) < exp.epochs:
            runner.stop_at_deadline(job, {"curves": {"value": curve}, "epochs_run": len(curve)})
            continue
        runner.complete(job, curve[-1], {"curves": {"value": curve}, "epochs_run": len(curve)})
