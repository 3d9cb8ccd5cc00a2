"""``timeout``: no trial starts after it, and trials in training stop at the end of their epoch.

Each study below has far more epochs than it can train within its timeout, so whatever trains when
the timeout passes must be cut short. The assertions are on what the storage holds, never on time.
"""

from __future__ import annotations

import time

import pytest
from optuna.trial import TrialState

import shoal
from shoal.space import Float, Space

SMALL = {"width": 32, "depth": 1, "batch_size": 128}
EPOCHS = 2_000  # ~10 s a trial or more: far beyond every timeout below (and finite, should one be ignored)


def _stopped(trial) -> bool:
    return trial.state == TrialState.PRUNED and trial.user_attrs.get("stopped") == "timeout"


@pytest.mark.parametrize("engine", ["population", "single"])
def test_trials_in_training_stop_at_the_timeout_with_their_curves(workdir, engine):
    result = shoal.tune(data="digits", preset="mlp", strategy="random", trials=50, epochs=EPOCHS, seed=0,
                        engine=engine, population=4, storage="t.db", progress=False, params=SMALL, timeout=1.0)
    trials = result.study.trials
    # the single engine trains one trial at a time; the population engine four
    assert len(trials) == (1 if engine == "single" else 4)
    for t in trials:
        assert _stopped(t), (t.state, t.user_attrs.get("stopped"))
        epochs = t.user_attrs["epochs_run"]
        assert 1 <= epochs < EPOCHS
        assert sorted(t.intermediate_values) == list(range(1, epochs + 1))
        assert len(t.user_attrs["curves"]["val_loss"]) == epochs
    assert result.best_trial is None  # nothing finished its epochs: no best to claim


def test_trials_finished_before_the_timeout_stay_complete(workdir):
    # Short trials: several complete before the timeout; none starts after it; the study never
    # reaches its budget of 10,000.
    # In this process (workers=1): worker processes take seconds to start on a slow machine, which
    # could use up the timeout before the first epoch ends.
    result = shoal.tune(data="digits", preset="mlp", strategy="random", trials=10_000, epochs=2, seed=0,
                        engine="population", population=4, workers=1, storage="t.db", progress=False,
                        params=SMALL, timeout=3.0)
    trials = result.study.trials
    assert 4 < len(trials) < 10_000
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete and all(t.user_attrs["epochs_run"] == 2 for t in complete)
    assert all(t.state == TrialState.COMPLETE or (_stopped(t) and t.user_attrs["epochs_run"] == 1) for t in trials)
    assert result.best_trial is not None and result.best_trial.state == TrialState.COMPLETE


def test_a_fidelity_objective_stops_at_the_timeout(workdir):
    def fn(config, epochs, state=None):
        time.sleep(0.05)
        step = (state or 0) + epochs
        return (config["x"] - 0.3) ** 2 + 1.0 / step, step

    result = shoal.tune(fn, space=Space([Float("x", 0.0, 1.0)]), strategy="random", trials=50, epochs=EPOCHS,
                        seed=0, storage="f.db", progress=False, timeout=0.5)
    [trial] = result.study.trials
    assert _stopped(trial)
    curve = trial.user_attrs["curves"]["value"]
    assert 1 <= len(curve) == trial.user_attrs["epochs_run"] < EPOCHS
    assert [trial.intermediate_values[e] for e in range(1, len(curve) + 1)] == curve


def test_pbt_ends_its_population_at_the_timeout_ranked_as_it_stands(workdir):
    result = shoal.tune(data="digits", preset="mlp", strategy="pbt", trials=4, epochs=EPOCHS, pbt_interval=2,
                        seed=0, storage="p.db", study="p", progress=False, timeout=2.0, params=SMALL)
    trials = result.study.trials
    final = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(final) == 4  # the population, each member complete where the timeout found it
    assert all(t.user_attrs["stopped"] == "timeout" for t in final)
    [at] = {max(t.intermediate_values) for t in final}  # they train in step: all ended at the same epoch
    assert 1 <= at < EPOCHS
    done = {t.number for t in final}
    assert all(t.state == TrialState.PRUNED and "stopped" not in t.user_attrs for t in trials if t.number not in done)
    assert result.best_trial.number in done


def test_the_cli_says_when_nothing_completed_before_the_timeout(workdir, monkeypatch, capsys):
    import sys

    from shoal.cli import main

    monkeypatch.setattr(sys, "argv", ["shoal", "tune", "--data", "digits", "--epochs", str(EPOCHS), "--trials", "50",
                                      "--timeout", "3", "--population", "4", "-p", "width=32", "-p", "depth=1", "-q"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "No trial completed before the timeout (3 s): 4 stopped at it" in out
    assert f"of {EPOCHS} epochs. Give it more time (--timeout) or fewer epochs (--epochs)" in out
    assert "best 0 of 0" not in out  # no empty table before it
    # a timeout shorter than loading the data: no trial at all, and the message says why
    monkeypatch.setattr(sys, "argv", ["shoal", "tune", "--data", "digits", "--timeout", "0.001", "-s", "z.db", "-q"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    assert "No trial started before the timeout (0.001 s)" in " ".join(capsys.readouterr().out.split())



def test_a_timeout_without_a_budget_searches_until_it(workdir):
    # No trials given: not the default 30, but as many as the timeout lets start (Optuna's
    # n_trials=None). A trial here is a few SQLite writes, ~10 ms (~100 ms on a loaded machine),
    # so 6 s holds far more than 30.
    def fn(config):
        return (config["x"] - 1.0) ** 2

    space = Space([Float("x", -3.0, 3.0)])
    result = shoal.tune(fn, space=space, strategy="random", timeout=6.0, storage="t.db", progress=False)
    trials = result.study.trials
    assert len(trials) > 30
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert result.study.user_attrs["shoal"]["trials"] is None  # recorded as "until the timeout"


def test_how_a_missing_budget_is_read(workdir):
    from shoal._errors import ConfigError
    from shoal.study import make_experiment
    from shoal.study._caviar import default_population_size

    assert make_experiment({}).trials == 30  # no timeout: the default budget
    until = make_experiment({"timeout": 60})
    assert until.trials is None
    until.validate()
    # model-based strategies train 32 at once then, not the 128 cap a huge budget would give
    assert default_population_size(until) == 32
    assert default_population_size(make_experiment({"timeout": 60, "strategy": "random"})) == 128
    # where the count is a size, a timeout cannot stand in for it: the default size stays
    assert make_experiment({"timeout": 60, "strategy": "pbt"}).trials == 30
    assert make_experiment({"timeout": 60, "strategy": "coarse-to-fine"}).trials == 30
    with pytest.raises(ConfigError, match="population's size"):
        make_experiment({"timeout": 60, "strategy": "pbt", "trials": None}).validate()
    with pytest.raises(ConfigError, match=r"give a number of trials, or a timeout"):
        make_experiment({"trials": None}).validate()


def test_the_check_names_a_search_until_the_timeout(workdir):
    from typer.testing import CliRunner

    from shoal.cli import app

    out = CliRunner().invoke(app, ["tune", "--data", "digits", "--timeout", "90", "--storage", "t.db", "--check"])
    assert out.exit_code == 0, out.output
    assert "trials until the timeout (90 s)" in " ".join(out.output.split())
