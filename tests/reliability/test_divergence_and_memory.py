"""A configuration that explodes fails alone, with its reason; a population keeps to its memory budget.

tests/study/test_caviar.py checks that a diverging member fails and one neighbour's final value
matches the single engine; tests/engine/test_population.py checks the engine's curves. Here: both
engines, the reason's wording (NaN / inf and the epoch), and every neighbour's whole curve against
the same study with a harmless value in the exploding member's place (same trial numbers, same seeds).
"""

from __future__ import annotations

import math
import re

import pytest
from optuna.trial import TrialState

import shoal

BASE = {"optimizer": "sgd", "width": 32, "depth": 1, "batch_size": 64, "batch_norm": "off", "lr_decay": "none",
        "dropout": 0.0, "weight_decay": 0.0, "l1": 0.0, "shape": "constant", "init": "he", "activation": "relu"}


def _study(engine: str, last_lr: float, name: str):
    # The random strategy draws a choice's index, whatever its value: with seed 2 the four trials take
    # choices 3, 1, 2, 2, so the exploding value (or the harmless one in its place) goes to trial 0
    # and its three neighbours have the same numbers, and so the same seeds, in both studies.
    return shoal.tune(data="digits", preset="mlp", strategy="random", trials=4, epochs=3, engine=engine, seed=2,
                      storage=f"{name}.db", progress=False, params={**BASE, "lr": [1e-2, 3e-2, last_lr]}).study


@pytest.mark.parametrize("engine", ["population", "single"])
def test_an_exploding_member_fails_with_its_reason_and_leaves_its_neighbours_as_they_were(workdir, engine):
    exploding = _study(engine, 1e6, "boom")
    calm = _study(engine, 1e-1, "calm")
    by_number = {t.number: t for t in calm.trials}
    bad = [t for t in exploding.trials if t.params["lr"] == 1e6]
    assert len(bad) == 1 and bad[0].state == TrialState.FAIL
    reason = bad[0].user_attrs["fail_reason"]
    # Caught at the end of the first epoch, where the loss became NaN or infinite, and said so.
    assert re.match(r"training diverged at epoch 1: train loss (nan|inf|-inf)\b", reason), reason
    assert "learning rate 1e+06" in reason and "smaller learning rate" in reason
    assert by_number[bad[0].number].state == TrialState.COMPLETE  # the harmless value in its place
    neighbours = [t for t in exploding.trials if t.params["lr"] != 1e6]
    assert len(neighbours) == 3
    for t in neighbours:
        twin = by_number[t.number]
        assert t.state == twin.state == TrialState.COMPLETE and t.params == twin.params
        assert t.user_attrs["seed"] == twin.user_attrs["seed"]
        assert len(t.user_attrs["curves"]["val_loss"]) == 3
        for key in ("train_loss", "val_loss", "val_acc"):
            assert t.user_attrs["curves"][key] == pytest.approx(twin.user_attrs["curves"][key], abs=1e-5)
        assert all(math.isfinite(v) for v in t.user_attrs["curves"]["train_loss"])


def test_a_small_memory_budget_splits_the_population_and_is_never_exceeded(workdir, monkeypatch, capsys):
    import sys

    from shoal.cli import main
    from shoal.engine import normalize
    from shoal.engine._packer import member_bytes

    params = {**BASE, "width": 256, "depth": 2, "optimizer": "adam", "lr": [1e-3, 2e-3, 3e-3]}
    one = member_bytes(normalize({**params, "lr": 1e-3}), "mlp", (1, 8, 8), 10)
    budget_mb = 2.5 * one / 2**20  # room for two members at a time
    argv = ["shoal", "tune", "--data", "digits", "--strategy", "random", "--trials", "7", "--epochs", "2",
            "--engine", "population", "--population", "8", "--memory-mb", repr(budget_mb), "-s", "m.db", "-q"]
    for name, value in params.items():
        argv += ["-p", f"{name}={','.join(map(str, value)) if isinstance(value, list) else value}"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0, capsys.readouterr().err

    import optuna

    study = optuna.load_study(study_name="digits-mlp", storage="sqlite:///m.db")
    stats = study.user_attrs["population"]
    assert stats["budget_bytes"] == int(budget_mb * 2**20)
    assert stats["max_members"] == 2  # the budget, not --population 8, decided
    assert 0 < stats["estimated_bytes"] <= stats["budget_bytes"]
    trials = study.trials
    assert len(trials) == 7 and all(t.state == TrialState.COMPLETE for t in trials)
    # In the storage a trial runs from its ask to its tell; at most one more than the two training is
    # asked and waiting for room. Without the budget all seven would have started together.
    events = sorted([(t.datetime_start, 1) for t in trials] + [(t.datetime_complete, -1) for t in trials],
                    key=lambda e: (e[0], e[1]))
    live, most = 0, 0
    for _, step in events:
        live += step
        most = max(most, live)
    assert most <= 3
    first_done = min(t.datetime_complete for t in trials)
    assert sum(t.datetime_start > first_done for t in trials) >= 4  # they trained in several groups
