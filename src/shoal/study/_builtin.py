"""Training the built-in presets inside a study: data once, then one job after another."""

from __future__ import annotations

import dataclasses
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from shoal._errors import ConfigError, TrialFailed

if TYPE_CHECKING:
    from shoal.study._experiment import Experiment
    from shoal.study._runner import Job, StudyRunner

__all__ = ["PreparedData", "prepare_data", "run_builtin", "test_score"]


@dataclass
class PreparedData:
    """The tensors of every fold (one entry without k-fold), on the training device."""

    folds: list  # list[shoal.engine.TensorData]
    description: str
    device: str


def prepare_data(exp: Experiment) -> PreparedData:
    """Load, split and scale the experiment's data (train-only statistics); move it to the device."""
    from shoal.data import describe, load_dataset, prepare
    from shoal.engine import TensorData, resolve_device

    from shoal.study._objectives import check_measures, parse_constraints

    ds = load_dataset(exp.data, target=exp.target, task=exp.task, download=exp.download)
    check_measures(exp.objectives, ds.task, exp.folds)
    check_measures([c.measure for c in parse_constraints(exp.constraints)], ds.task, exp.folds, "constraint on")
    if exp.preset == "cnn" and len(ds.input_shape) != 3:
        raise ConfigError(
            f"The cnn preset needs image data shaped (channels, height, width), but {exp.data!r} has "
            f"input shape {ds.input_shape}. Use --preset mlp for tabular data."
        )
    splits = _splits(exp, ds)
    device = resolve_device(exp.device)
    folds = [TensorData.from_prepared(prepare(ds, s), device) for s in splits]
    return PreparedData(folds, describe(ds), str(device))


def _splits(exp: Experiment, ds: Any) -> list:
    """The experiment's splits of ``ds``: its k folds, or one train/validation split."""
    from shoal.data import kfold_splits, train_val_split

    if exp.folds:
        return kfold_splits(ds, k=exp.folds, seed=exp.seed, test_fraction=exp.test_fraction,
                            official_test=exp.official_test)
    return [train_val_split(ds, val_fraction=exp.val_fraction, test_fraction=exp.test_fraction, seed=exp.seed,
                            official_test=exp.official_test)]


# The settings that decide which rows a built-in trial trains and validates on, and its model family:
# what training a stored trial again needs (``shoal best --test``, ``shoal schedule --replay``).
DATA_SETTINGS = ("data", "preset", "seed", "val_fraction", "test_fraction", "official_test", "folds", "target",
                 "task", "device", "download")


def test_score(study: Any, trial: Any) -> dict[str, Any]:
    """Train ``trial``'s configuration again as it trained in the study (its seed, its epochs, the
    first fold's training rows) and evaluate it once on the held-out test rows (``test_fraction``, or
    the data set's own test part with ``official_test``).

    The result (``test_loss``, ``test_acc`` for classification, and the trial, epochs and rows) is
    stored in the study's user attribute ``test`` and returned. The test rows never took part in
    the search: this is the unbiased estimate the validation values are not.
    """
    from shoal.data import load_dataset, prepare
    from shoal.engine import TensorData, resolve_device, train

    from shoal.study._experiment import make_experiment

    settings = dict(study.user_attrs.get("shoal") or {})
    if "objective" in settings or "model" in settings:
        raise ConfigError(f"The study {study.study_name!r} tunes your own code: shoal cannot train it again. "
                          "Evaluate its best configuration on your test data yourself.")
    if not settings.get("test_fraction") and not settings.get("official_test"):
        raise ConfigError(f"The study {study.study_name!r} holds out no test rows (test_fraction = 0). Give "
                          "--test-fraction (e.g. 0.2; test_fraction in the experiment file or shoal.tune), or "
                          "--official-test for MNIST's own test file, when the study starts.")
    known = {k: v for k, v in settings.items() if k in DATA_SETTINGS}
    exp = make_experiment(known)
    ds = load_dataset(exp.data, target=exp.target, task=exp.task, download=exp.download)
    split = _splits(exp, ds)[0]
    p = prepare(ds, split)
    # the test rows in the place of the validation rows: training never reads them (no patience here)
    data = TensorData.from_prepared(dataclasses.replace(p, X_val=p.X_test, y_val=p.y_test), resolve_device(exp.device))
    epochs = int(trial.user_attrs.get("epochs_run") or len(trial.user_attrs.get("curves", {}).get("val_loss", [])))
    if epochs < 1:
        raise ConfigError(f"Trial {trial.number} trained no epoch: there is nothing to evaluate.")
    seed = int(trial.user_attrs.get("seed", 0))
    last = train(trial.user_attrs.get("config", trial.params), data, family=exp.preset, epochs=epochs, seed=seed).last
    result = {"trial": trial.number, "epochs": epochs, "rows": int(len(split.test)), "test_loss": last.val_loss}
    if last.val_acc is not None:
        result["test_acc"] = last.val_acc
    study.set_user_attr("test", result)
    return result


def trial_attrs(folds: list[list], device: str, engine: str) -> dict[str, Any]:
    """A trial's user attributes from each fold's epoch records (one fold without k-fold): curves
    averaged over folds (cut to the shortest), epochs run, train-validation gap, per-fold losses."""
    n = min(len(records) for records in folds)
    curves: dict[str, Any] = {}
    for name in ("train_loss", "train_acc", "val_loss", "val_acc", "val_balanced_acc", "val_f1", "val_r2",
                 "val_mse", "lr", "seconds"):
        rows = [[getattr(r, name) for r in records[:n]] for records in folds]
        if any(v is None for row in rows for v in row):
            continue
        curves[name] = [float(x) for x in np.mean(np.array(rows, dtype=float), axis=0)] if n else []
    attrs: dict[str, Any] = {"curves": curves, "epochs_run": n, "device": device, "engine": engine}
    if len(folds) > 1 and n:
        attrs["fold_val_loss"] = [records[n - 1].val_loss for records in folds]
    if curves.get("train_loss") and curves.get("val_loss"):
        attrs["gap"] = curves["val_loss"][-1] - curves["train_loss"][-1]
    return attrs


def static_of(exp: Experiment, cfg: dict[str, Any], data: PreparedData) -> dict[str, float]:
    """What the configuration alone decides (parameters, memory; latency when it is asked for)."""
    from shoal.study._objectives import parse_constraints, static_measures

    fold = data.folds[0]
    wanted = set(exp.objectives) | {c.measure for c in parse_constraints(exp.constraints)}
    return static_measures(cfg, exp.preset, fold.input_shape, fold.n_outputs, folds=len(data.folds),
                           latency="latency_ms" in wanted, device=data.device)


def train_job(job: Job, runner: StudyRunner, exp: Experiment, data: PreparedData) -> None:
    """Train one job on every fold; report, prune, record, and tell the study."""
    from shoal.engine import normalize, train
    from shoal.study._objectives import epoch_measures

    static = static_of(exp, normalize(job.config), data)
    if not runner.admit(job, static):
        return  # over a limit the configuration alone decides: recorded, not trained
    histories = []
    pruned = []
    timed_out = []
    for k, fold in enumerate(data.folds):
        last_fold = k == len(data.folds) - 1
        so_far: list = []

        def on_epoch(record, _last=last_fold, _so_far=so_far):
            # With k-fold, the pruner sees the mean over folds once the last fold reaches the epoch.
            _so_far.append(record)
            stop = False
            if _last:
                folds = [h.epochs[: record.epoch] for h in histories] + [_so_far]
                stop = runner.report(job, record.epoch, {**static, **epoch_measures(folds)})
                pruned.append(stop)
            if not stop and not (_last and record.epoch >= exp.epochs):
                runner.check_stop()  # a Ctrl-C stops here (a trial at its last epoch completes first)
                if runner.past_deadline():  # so does the timeout
                    timed_out.append(record.epoch)
                    return True
            return stop

        try:
            history = train(job.config, fold, family=exp.preset, epochs=exp.epochs, seed=job.seed + k,
                            on_epoch=on_epoch, patience=exp.patience)
        except TrialFailed as exc:  # diverged: failed, with the epochs it trained (as the population engine keeps them)
            last = [exc.record] if getattr(exc, "record", None) is not None else []
            done = [h.epochs for h in histories] + ([so_far + last] if so_far or last else [])
            runner.fail(job, str(exc), trial_attrs(done, data.device, "single") if done else None)
            return
        histories.append(history)
        if timed_out:
            break
    attrs = trial_attrs([h.epochs for h in histories], data.device, "single")
    if timed_out:
        runner.stop_at_deadline(job, attrs)
        return
    if any(pruned):
        runner.prune(job, attrs)
        return
    runner.complete(job, {**static, **epoch_measures([h.epochs for h in histories])}, attrs)


def run_builtin(runner: StudyRunner, exp: Experiment, data: PreparedData) -> None:
    """Train built-in preset trials with the single-model engine until the budget is spent."""
    while (job := runner.ask()) is not None:
        try:
            train_job(job, runner, exp, data)
        except KeyboardInterrupt:
            runner.interrupt(job)
            raise
        except TrialFailed as exc:
            runner.fail(job, str(exc))
        except Exception as exc:  # a failing trial is recorded and the study goes on
            runner.fail(job, f"{type(exc).__name__}: {exc}", {"traceback": traceback.format_exc()[-4000:]})
