"""A known small study, built by hand in a real SQLite file, whose report numbers are known."""

from __future__ import annotations

import datetime as dt

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
