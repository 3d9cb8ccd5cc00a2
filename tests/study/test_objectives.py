"""Objectives by name, several at once (Pareto front), and limits (constraints) on any measure."""

from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score, mean_squared_error, r2_score
from typer.testing import CliRunner

import shoal
from shoal._errors import ConfigError
from shoal.engine import EpochRecord
from shoal.engine._scores import classification_scores, regression_scores
from shoal.study import resolve_storage
from shoal.study._objectives import epoch_measures, parse_constraints, parse_objectives, pick, resolve, static_measures


# ---------------------------------------------------------------------- each measure on a known case
@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_classification_scores_match_scikit_learn():
    rng = np.random.default_rng(0)
    for n_classes in (2, 5, 10):
        y = rng.integers(0, n_classes, 300)
        y[y == 1] = 0  # class 1 never occurs: it counts for F1 only where it is predicted
        pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, n_classes, 300))
        s = classification_scores(y, pred, n_classes)
        assert s["val_balanced_acc"] == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)
        assert s["val_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0), abs=1e-12)


def test_regression_scores_match_scikit_learn_in_the_targets_units():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(50, 2))
    pred = y + rng.normal(scale=0.3, size=y.shape)
    scale = np.array([2.0, 5.0])  # the engines see standardized targets; the MSE is reported unscaled
    s = regression_scores(y, pred, scale)
    assert s["val_r2"] == pytest.approx(r2_score(y, pred), abs=1e-12)
    assert s["val_mse"] == pytest.approx(mean_squared_error(y * scale, pred * scale), abs=1e-12)
    assert regression_scores([[1.0], [1.0]], [[1.0], [1.0]])["val_r2"] == 1.0  # constant target, perfect fit


def test_engines_record_the_scores_of_their_own_predictions(small_digits):
    """The population engine's balanced accuracy and F1 equal the single engine's, and both equal
    scikit-learn's on the trained model's predictions."""
    from shoal.engine import train
    from shoal.engine._models import build_model
    from shoal.engine._population import Population
    from shoal.engine._single import evaluate_scores

    data = small_digits
    cfgs = [{"lr": 0.01, "optimizer": "adam", "batch_size": 64, "width": 32, "depth": 1},
            {"lr": 0.2, "optimizer": "sgd", "batch_size": 64, "width": 16, "depth": 2}]
    single = [train(c, data, epochs=2, seed=3).last for c in cfgs]
    pop = Population("mlp", data.input_shape, data.n_outputs, data.task, 64)
    for i, c in enumerate(cfgs):
        pop.add(i, c, 3, data, 2)
    pop.run_epoch()
    records = pop.run_epoch()
    for i in range(2):
        assert records[i].val_balanced_acc == pytest.approx(single[i].val_balanced_acc, abs=1e-6)
        assert records[i].val_f1 == pytest.approx(single[i].val_f1, abs=1e-6)
    model = build_model("mlp", data.input_shape, data.n_outputs, shoal.engine.normalize(cfgs[0]), 0)
    _, acc, scores = evaluate_scores(model, data.X_val, data.y_val, data.task, data.n_outputs)
    with torch.no_grad():
        pred = model(data.X_val).argmax(1).numpy()
    assert scores["val_balanced_acc"] == pytest.approx(balanced_accuracy_score(data.y_val.numpy(), pred))
    assert scores["val_f1"] == pytest.approx(f1_score(data.y_val.numpy(), pred, average="macro", zero_division=0))


@pytest.fixture
def small_digits():
    from shoal.data import load_dataset, prepare, train_val_split
    from shoal.engine import TensorData

    ds = load_dataset("digits")
    return TensorData.from_prepared(prepare(ds, train_val_split(ds, seed=0)))


def _record(epoch, val_loss, val_acc, train_loss, train_acc, seconds):
    return EpochRecord(epoch=epoch, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss, val_acc=val_acc,
                       lr=0.1, seconds=seconds)


def test_epoch_measures_average_folds_and_give_their_spread():
    fold_a = [_record(1, 1.0, 0.5, 1.2, 0.4, 2.0), _record(2, 0.6, 0.8, 0.5, 0.85, 2.0)]
    fold_b = [_record(1, 1.1, 0.4, 1.3, 0.3, 3.0), _record(2, 0.8, 0.7, 0.4, 0.9, 3.0), _record(3, 9, 9, 9, 9, 9)]
    m = epoch_measures([fold_a, fold_b])  # cut to the shortest fold: epoch 2
    assert m["val_loss"] == pytest.approx(0.7)
    assert m["val_acc"] == pytest.approx(0.75)
    assert m["val_acc_std"] == pytest.approx(np.std([0.8, 0.7], ddof=1))
    assert m["gap"] == pytest.approx(0.7 - 0.45)  # validation minus training loss
    assert m["acc_gap"] == pytest.approx(0.875 - 0.75)  # training minus validation accuracy
    assert m["train_seconds"] == pytest.approx(10.0)  # both folds, two epochs each
    assert m["epoch_seconds"] == pytest.approx(5.0)


def test_static_measures_count_parameters_of_the_built_model():
    cfg = shoal.engine.normalize({"depth": 1, "width": 32, "batch_norm": "off"})
    m = static_measures(cfg, "mlp", (1, 8, 8), 10, latency=True)
    assert m["params"] == 64 * 32 + 32 + 32 * 10 + 10
    assert m["memory_mb"] > 0 and 0 < m["latency_ms"] < 1000


def test_names_aliases_and_limits_parse_or_say_what_is_wrong():
    assert parse_objectives(["f1", "latency"]) == ["val_f1", "latency_ms"]
    assert [c.key for c in parse_constraints(["params < 1e5", "val_acc>=0.9"])] == ["params<=100000", "val_acc>=0.9"]
    assert parse_constraints("val_acc>=0.9")[0].violation(0.95) == pytest.approx(-0.05)
    with pytest.raises(ConfigError, match="Did you mean 'val_balanced_acc'"):
        parse_objectives("val_balance_acc")
    with pytest.raises(ConfigError, match="must read '<measure> <= <number>'"):
        parse_constraints(["params = 5"])
    with pytest.raises(ConfigError, match="names a measure twice"):
        parse_objectives("acc,val_acc")


@pytest.mark.parametrize("settings, message", [
    ({"metric": "val_acc,params", "pruner": "median"}, "prunes single-objective studies only"),
    ({"metric": "val_acc,params", "strategy": "cmaes"}, "optimizes one value"),
    ({"metric": "val_acc", "constraints": ["params<=10"], "strategy": "cmaes"}, "cannot steer away"),
    ({"metric": "val_acc_std"}, "needs --folds"),
    ({"metric": "val_r2"}, "needs a regression target"),
    ({"metric": "val_loss", "constraints": ["val_mse<=1"]}, "constraint on 'val_mse' needs a regression"),
])
def test_bad_objectives_are_refused_before_anything_is_written(workdir, settings, message):
    with pytest.raises(ConfigError, match=message):
        shoal.tune(data="digits", trials=2, epochs=1, storage="x.log", progress=False, **settings)
    assert not (workdir / "x.log").exists()


# ---------------------------------------------------------------------- studies
def _complete(study):
    return [t for t in study.trials if t.state.name == "COMPLETE"]


def test_a_multi_objective_study_records_every_measure_and_its_pareto_front(workdir):
    result = shoal.tune(data="digits", metric="val_acc,params", strategy="nsga2", trials=8, epochs=2,
                        storage="mo.log", progress=False, params={"depth": 1})
    study = result.study
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.user_attrs["shoal"]["objectives"] == ["val_acc", "params"]
    done = _complete(study)
    assert len(done) == 8
    for t in done:
        m = t.user_attrs["measures"]
        assert t.values == [m["val_acc"], m["params"]]
        assert m["val_acc"] == pytest.approx(t.user_attrs["curves"]["val_acc"][-1])
        assert {"val_balanced_acc", "val_f1", "train_seconds", "epoch_seconds", "gap", "acc_gap"} <= set(m)
    front = result.pareto
    assert front and result.best_trial.number == front[0].number

    def dominates(a, b):
        return a.values[0] >= b.values[0] and a.values[1] <= b.values[1] and a.values != b.values

    for t in done:  # the front is exactly the non-dominated trials
        on_front = any(f.number == t.number for f in front)
        assert on_front == (not any(dominates(o, t) for o in done))


def test_limits_make_trials_infeasible_and_are_never_best(workdir):
    limit = 5000
    result = shoal.tune(data="digits", metric="val_acc", constraints=[f"params<={limit}"], strategy="random",
                        trials=10, epochs=2, storage="c.log", progress=False)
    done = _complete(result.study)
    big = [t for t in done if t.user_attrs["measures"]["params"] > limit]
    small = [t for t in done if t.user_attrs["measures"]["params"] <= limit]
    assert big and small, "the random configurations should fall on both sides of the limit"
    for t in big:  # never trained: recorded with the worst value and Optuna's constraint value
        assert t.values == [-math.inf]
        assert t.constraints[f"params<={limit}"] == t.user_attrs["measures"]["params"] - limit
        assert t.user_attrs["feasible"] is False and "breaks params<=5000" in t.user_attrs["infeasible_before_training"]
        assert "curves" not in t.user_attrs
    for t in small:
        assert t.user_attrs["feasible"] is True and t.constraints[f"params<={limit}"] <= 0
    assert result.best_trial.number == max(small, key=lambda t: t.value).number
    # "the best accuracy among trials training in under X seconds per epoch"
    seconds = sorted(t.user_attrs["measures"]["epoch_seconds"] for t in small)
    cap = seconds[len(seconds) // 2]
    chosen = pick(result.study, "val_acc", [f"epoch_seconds<={cap}"])
    within = [t for t in small if t.user_attrs["measures"]["epoch_seconds"] <= cap]
    assert chosen.number == max(within, key=lambda t: t.value).number


def test_a_limit_checked_after_training_is_recorded_as_infeasible(workdir):
    result = shoal.tune(data="digits", metric="val_loss", constraints=["val_acc>=0.5"], strategy="random",
                        trials=6, epochs=1, storage="a.log", progress=False,
                        params={"lr": {"low": 1e-5, "high": 0.05, "log": True}, "optimizer": "sgd"})
    done = _complete(result.study)
    for t in done:
        acc = t.user_attrs["measures"]["val_acc"]
        assert t.user_attrs["feasible"] is (acc >= 0.5)
        assert t.constraints["val_acc>=0.5"] == pytest.approx(0.5 - acc)
        assert math.isfinite(t.value)  # trained: its real value is kept
    feasible = [t for t in done if t.user_attrs["feasible"]]
    if feasible:
        assert result.best_trial.number == min(feasible, key=lambda t: t.value).number
    else:
        assert result.best_trial is None


def test_regression_objectives_and_kfold_spread(workdir):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(160, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) * 10 + 3
    rows = "\n".join(",".join(f"{v:.5f}" for v in (*x, t)) for x, t in zip(X, y))
    (workdir / "reg.csv").write_text("a,b,c,d,target\n" + rows + "\n")
    result = shoal.tune(data="reg.csv", metric="r2,val_r2_std", folds=2, strategy="random", trials=3, epochs=2,
                        storage="r.log", progress=False, params={"lr": 0.01, "optimizer": "adam"})
    done = _complete(result.study)
    assert len(done) == 3
    for t in done:
        m = t.user_attrs["measures"]
        assert t.values == [m["val_r2"], m["val_r2_std"]]
        assert m["val_r2"] <= 1 and m["val_r2_std"] >= 0
        # the MSE in the target's units is the standardized loss times the target's variance
        assert m["val_mse"] > m["val_loss"]


def test_cli_prints_the_front_and_picks_a_point(workdir):
    from shoal.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["tune", "--data", "digits", "--trials", "6", "--epochs", "1", "--objective",
                              "val_acc,train_seconds", "-s", "cli.log", "-q", "-p", "depth=1"])
    assert out.exit_code == 0, out.output
    assert "Pareto front" in out.output and "shoal best --by val_acc" in out.output
    study = optuna.load_study(study_name="digits-mlp", storage=resolve_storage("cli.log"))
    secs = sorted(t.values[1] for t in _complete(study))
    cap = secs[2]
    out = runner.invoke(app, ["best", "-s", "cli.log", "--by", "val_acc", "--where", f"train_seconds<={cap}", "--json"])
    assert out.exit_code == 0, out.output
    picked = json.loads(out.output)
    within = [t for t in _complete(study) if t.values[1] <= cap]
    assert picked["trial"] == max(within, key=lambda t: t.values[0]).number
    out = runner.invoke(app, ["best", "-s", "cli.log", "--where", "train_seconds<=0"])
    assert isinstance(out.exception, ConfigError) and "No complete trial" in str(out.exception)
    # without --by: the best by the first objective, and it says it is one point of the front
    out = runner.invoke(app, ["best", "-s", "cli.log"])
    front = len(study.best_trials)
    assert f"one of the {front} trials on the Pareto front, the best by val_acc" in " ".join(out.output.split())


def test_a_user_objective_can_return_several_values(workdir):
    from shoal.space import Float, Space

    result = shoal.tune(lambda c: ((c["x"] - 1) ** 2, (c["x"] + 1) ** 2), space=Space([Float("x", -3, 3)]),
                        direction=["minimize", "minimize"], trials=12, storage="u.log", study="u", progress=False)
    front = result.pareto
    assert front and all(-1 - 1e-9 <= t.params["x"] <= 1 + 1e-9 for t in front)  # the front is x in [-1, 1]


def test_a_warm_start_from_a_pareto_search_reruns_its_front_first(workdir):
    from shoal.space import Float, Space

    def two(c):
        return (c["x"] - 1) ** 2, (c["x"] + 1) ** 2

    space = Space([Float("x", -3, 3)])
    old = shoal.tune(two, space=space, direction=["minimize", "minimize"], trials=12, storage="old.log",
                     study="old", seed=1, progress=False)
    front = [t.number for t in old.pareto]
    new = shoal.retune("old.log", top=len(front), objective=two, space=space, direction=["minimize", "minimize"],
                       trials=len(front) + 2, storage="new.log", study="new", progress=False)
    first = sorted(new.study.trials, key=lambda t: t.number)[: len(front)]
    assert [t.user_attrs["warm_start_of"]["trial"] for t in first] == front
    assert all(t.params == old.study.trials[n].params for t, n in zip(first, front))


def test_population_training_seconds_leave_out_the_one_off_compile(small_digits, monkeypatch):
    """Members share the epoch's time by their multiply-adds; the optimizer update's compile (once per
    process) is left out, so the first population's trials do not look slow."""
    import time

    from shoal.engine import _pop_optim
    from shoal.engine._population import Population

    monkeypatch.setattr(_pop_optim, "_compiled", None)  # compile again in this test
    monkeypatch.delenv("SHOAL_NO_COMPILE", raising=False)
    pop = Population("mlp", small_digits.input_shape, small_digits.n_outputs, small_digits.task, 64)
    widths = {0: 16, 1: 64}
    for key, width in widths.items():
        pop.add(key, {"width": width, "depth": 1, "optimizer": "adam"}, key, small_digits, 2)
    before = _pop_optim.compile_seconds
    start = time.perf_counter()
    records = pop.run_epoch()
    wall = time.perf_counter() - start
    compiled = _pop_optim.compile_seconds - before
    assert compiled > 0
    total = sum(r.seconds for r in records.values())
    assert total <= wall - compiled + 1e-6
    ratio = records[1].seconds / records[0].seconds  # shares by multiply-adds: (64*64 + 64*10) / (64*16 + 16*10)
    assert ratio == pytest.approx((64 * 64 + 64 * 10) / (64 * 16 + 16 * 10))


@pytest.mark.parametrize("name, hint", [
    ("val_accuracy", "Did you mean 'val_acc'?"),  # by an alias, named as the measure it stands for
    ("mymod:objective", "to tune your own function, pass it from Python (shoal.tune(fn, space=...))"),
])
def test_an_unknown_measure_points_to_what_was_meant(name, hint):
    with pytest.raises(ConfigError) as info:
        resolve(name)
    assert hint in str(info.value) and "short names: loss=val_loss, accuracy=val_acc" in str(info.value)
