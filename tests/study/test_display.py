"""The progress bar: its count and its time left."""

from __future__ import annotations

import io

import optuna
from rich.console import Console

from shoal.study._display import Progress, time_left


def test_the_progress_bar_counts_down_to_the_timeout_when_it_comes_first():
    assert time_left(100.0, None, now=0.0) == (100.0, False)
    assert time_left(100.0, 30.0, now=10.0) == (20.0, True)  # the timeout ends the run first
    assert time_left(5.0, 30.0, now=10.0) == (5.0, False)  # the budget does
    assert time_left(None, 30.0, now=10.0) == (20.0, True)  # no pace measured yet
    assert time_left(100.0, 30.0, now=40.0) == (0.0, True)  # past it: never negative


def test_a_study_already_past_the_budget_shows_as_full_not_over():
    study = optuna.create_study()
    for x in range(12):
        study.add_trial(optuna.trial.create_trial(value=float(x)))
    out = io.StringIO()
    progress = Progress(10, "minimize", "val_loss", console=Console(file=out, width=200))
    with progress:
        progress.resume(study, done=12)
    assert "12/12" in out.getvalue() and "12/10" not in out.getvalue()


def test_interrupted_trials_are_counted_apart_from_failed_ones():
    from optuna.trial import TrialState, create_trial

    study = optuna.create_study()
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "interrupted"}))
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "training diverged at epoch 1"}))
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "interrupted"}))
    out = io.StringIO()
    progress = Progress(10, "minimize", "val_loss", console=Console(file=out, width=200))
    with progress:
        progress.resume(study, done=1)
    text = out.getvalue()
    assert "1 failed" in text and "2 interrupted" in text


def test_the_summary_shows_val_acc_only_where_trials_recorded_it():
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from shoal.study._display import summary_table

    def study(curves):
        s = optuna.create_study()
        for v in (0.3, 0.2):
            s.add_trial(create_trial(value=v, params={"lr": v}, distributions={"lr": FloatDistribution(0.1, 1.0)},
                                     user_attrs={"curves": curves}))
        return s

    def headers(s):
        return [c.header for c in summary_table(s, metric="val_loss").columns]

    assert "val_acc" in headers(study({"val_loss": [0.3], "val_acc": [0.9]}))
    assert "val_acc" not in headers(study({"val_loss": [0.3]}))  # regression: no accuracy to show
