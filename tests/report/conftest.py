"""A known small study, built by hand in a real SQLite file, whose report numbers are known."""

from __future__ import annotations

import datetime as dt
import math

import pytest

T0 = dt.datetime(2026, 1, 1, 12, 0, 0)


def _curves(train, val, train_acc, val_acc):
    return {"train_loss": train, "val_loss": val, "train_acc": train_acc, "val_acc": val_acc,
            "lr": [0.01] * len(train), "seconds": [1.0] * len(train)}


# number: (state, value, config, curves, extra attrs); trial i starts at 10 i s and runs 3 s (1 s if failed)
TRIALS = {
    0: ("COMPLETE", 0.5, {"optimizer": "adam", "lr": 0.01, "width": 64},
        _curves([1.0, 0.6, 0.4], [1.1, 0.7, 0.5], [0.5, 0.8, 0.9], [0.4, 0.7, 0.85]), {"stage": "coarse"}),
    # overfits: the gap (0.25) is above 0.3 x 0.3 and the val loss rose from 0.25 to 0.3
    1: ("COMPLETE", 0.3, {"optimizer": "sgd", "lr": 0.1, "width": 128},
        _curves([1.0, 0.3, 0.05], [1.0, 0.25, 0.3], [0.6, 0.95, 0.99], [0.6, 0.9, 0.88]), {"stage": "coarse"}),
    # underfits: train accuracy 0.3 is below 0.8 x the best (0.99)
    2: ("COMPLETE", 0.9, {"optimizer": "sgd", "lr": 0.001, "width": 64},
        _curves([2.1, 1.6, 1.0], [2.0, 1.5, 0.9], [0.1, 0.2, 0.3], [0.1, 0.2, 0.35]), {"stage": "coarse"}),
    3: ("PRUNED", None, {"optimizer": "adam", "lr": 0.05, "width": 128},
        _curves([1.5], [1.6], [0.3], [0.3]), {"stage": "coarse"}),
    4: ("FAIL", None, {"optimizer": "sgd", "lr": 0.9, "width": 64}, None,
        {"stage": "fine", "fail_reason": "training diverged at epoch 1"}),
    5: ("COMPLETE", 0.2, {"optimizer": "adam", "lr": 0.003, "width": 128},
        _curves([0.9, 0.4, 0.15], [0.9, 0.4, 0.2], [0.7, 0.9, 0.98], [0.7, 0.9, 0.95]), {"stage": "fine", "pbt_parent": 0}),
}


def build_known_study(path, name: str = "known") -> str:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{path}"
    study = optuna.create_study(storage=url, study_name=name, direction="minimize")
    study.set_user_attr("shoal", {"metric": "val_loss", "data": "hand-made", "preset": "mlp"})
    dists = {"optimizer": CategoricalDistribution(["sgd", "adam"]), "lr": FloatDistribution(1e-4, 1.0, log=True),
             "width": IntDistribution(64, 128, step=64)}
    for number, (state, value, config, curves, extra) in TRIALS.items():
        attrs = {"config": config, "seconds": 3.0 if state != "FAIL" else 1.0, **extra}
        if curves:
            attrs["curves"] = curves
            attrs["epochs_run"] = len(curves["val_loss"])
        trial = create_trial(state=TrialState[state], value=value, params=config, distributions=dists,
                             user_attrs=attrs)
        trial.datetime_start = T0 + dt.timedelta(seconds=10 * number)
        trial.datetime_complete = trial.datetime_start + dt.timedelta(seconds=1 if state == "FAIL" else 3)
        study.add_trial(trial)
    return url


@pytest.fixture(scope="session")
def known_db(tmp_path_factory):
    # Reports only read the study, so one file serves every test.
    path = tmp_path_factory.mktemp("report") / "known.db"
    build_known_study(path)
    return path


# Multi-objective: number -> (state, (val_acc, train_seconds), config, params count). The limit is
# params <= 100,000 (constraint value params - 100,000). Trial 5 broke it before training: it holds the
# worst values (-inf, +inf). Trial 7 ties trial 0 (neither dominates the other: both are on the front).
LIMIT = 100_000
MULTI = {
    0: ("COMPLETE", (0.80, 2.0), {"optimizer": "adam", "lr": 0.01, "width": 64}, 50_000),
    1: ("COMPLETE", (0.90, 5.0), {"optimizer": "adam", "lr": 0.003, "width": 128}, 90_000),
    2: ("COMPLETE", (0.85, 3.0), {"optimizer": "sgd", "lr": 0.1, "width": 64}, 50_000),
    3: ("COMPLETE", (0.70, 1.0), {"optimizer": "sgd", "lr": 0.03, "width": 64}, 20_000),
    4: ("COMPLETE", (0.95, 9.0), {"optimizer": "adam", "lr": 0.002, "width": 256}, 150_000),  # trained, infeasible
    5: ("COMPLETE", (-math.inf, math.inf), {"optimizer": "adam", "lr": 0.001, "width": 512}, 400_000),
    6: ("COMPLETE", (0.88, 6.0), {"optimizer": "sgd", "lr": 0.05, "width": 128}, 90_000),  # dominated by 1
    7: ("COMPLETE", (0.80, 2.0), {"optimizer": "sgd", "lr": 0.02, "width": 64}, 50_000),
    8: ("PRUNED", None, {"optimizer": "adam", "lr": 0.3, "width": 64}, 50_000),
    9: ("FAIL", None, {"optimizer": "sgd", "lr": 0.9, "width": 128}, 90_000),
    10: ("COMPLETE", (0.60, 4.0), {"optimizer": "sgd", "lr": 0.0005, "width": 128}, 90_000),  # dominated
    11: ("COMPLETE", (0.92, 8.0), {"optimizer": "adam", "lr": 0.005, "width": 128}, 90_000),
}
MULTI_FRONT = [11, 1, 2, 0, 7, 3]  # best val_acc first; ties in trial order


def build_multi_study(path, name: str = "multi", objectives=("val_acc", "train_seconds"),
                      directions=("maximize", "minimize")) -> str:
    """The study ``shoal tune --metric val_acc,train_seconds --max-params 100000`` records, made with
    Optuna's ask and tell (a third objective, when asked, is the parameter count, minimized)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{path}" if not str(path).endswith(".log") else str(path)
    storage = url if url.startswith("sqlite") else optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(url))
    # Asked and told in memory, then stored with one write per trial (SQLite's commits, one per
    # attribute, would take seconds).
    study = optuna.create_study(directions=list(directions))
    settings = {"metric": objectives[0], "objectives": list(objectives), "constraints": [f"params<={LIMIT}"],
                "data": "hand-made", "preset": "mlp"}
    for number, (state, values, config, params) in MULTI.items():
        study.enqueue_trial(config)
        trial = study.ask()
        trial.suggest_categorical("optimizer", ["sgd", "adam"])
        trial.suggest_float("lr", 1e-4, 1.0, log=True)
        trial.suggest_int("width", 64, 512, log=True)
        trial.set_user_attr("config", config)
        trial.set_constraint("params", float(params - LIMIT))
        trial.set_user_attr("feasible", params <= LIMIT)
        if params > LIMIT:
            trial.set_user_attr("violations", {"params": float(params - LIMIT)})
        if state == "COMPLETE":
            if math.isinf(values[0]):
                trial.set_user_attr("infeasible_before_training", f"params {params} > {LIMIT}")
            else:
                acc, secs = values
                trial.set_user_attr("measures", {"val_acc": acc, "train_seconds": secs, "params": float(params)})
                trial.set_user_attr("curves", {"val_acc": [acc - 0.1, acc], "val_loss": [1.0, 1 - acc],
                                               "train_loss": [0.9, 0.9 - acc]})
                trial.set_user_attr("seconds", secs)
                trial.set_user_attr("epochs_run", 2)
            full = {"val_acc": values[0], "train_seconds": values[1], "params": float(params)}
            study.tell(trial, [full[o] if not math.isinf(values[0]) else (
                -math.inf if d == "maximize" else math.inf) for o, d in zip(objectives, directions)])
        else:
            study.tell(trial, state=optuna.trial.TrialState[state])
    stored = optuna.create_study(storage=storage, study_name=name, directions=list(directions))
    stored.set_user_attr("shoal", settings)
    stored.add_trials(study.trials)
    return url


@pytest.fixture(scope="session")
def multi_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "multi.db"
    build_multi_study(path)
    return path
