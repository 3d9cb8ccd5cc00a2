"""Studies end to end: strategies by name, records, failures, pruning, storages, resume."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

import shoal
from shoal import ConfigError, Float, Int, Space, Categorical
from shoal.study import STRATEGIES, StudyRunner, open_study, trial_seed


def quadratic_space() -> Space:
    return Space([
        Float("x", -5.0, 5.0),
        Float("scale", 1e-3, 10.0, log=True),
        Int("n", 1, 8),
        Categorical("kind", ["a", "b"]),
    ])


def quadratic(config):
    return (config["x"] - 1.0) ** 2 + math.log10(config["scale"]) ** 2 + (config["kind"] == "b")


def states(study):
    return [t.state for t in study.get_trials(deepcopy=False)]


@pytest.mark.parametrize("strategy", sorted(set(STRATEGIES) - {"pbt"}))  # PBT: test_strategy_suite.py
def test_every_strategy_runs_by_name_and_is_seeded(workdir, strategy):
    trials = 12
    runs = []
    for name in ("first", "second"):
        result = shoal.tune(quadratic, space=quadratic_space(), strategy=strategy, trials=trials, seed=7,
                            storage=f"{strategy}.db", study=name, progress=False, grid_points=2)
        runs.append([t.params for t in result.study.trials])
    expected = min(trials, quadratic_space().grid_size(2)) if strategy == "grid" else trials
    assert len(runs[0]) == expected
    assert all(s == TrialState.COMPLETE for s in states(result.study))
    # Same seed, same storage kind, fresh study: the same configurations, in order.
    assert runs[0] == runs[1]
    assert result.best_value == min(t.value for t in result.study.trials)


def test_random_strategy_samples_log_parameters_on_log_scale(workdir):
    result = shoal.tune(quadratic, space=quadratic_space(), strategy="random", trials=200, seed=0,
                        storage="log.db", progress=False)
    scales = sorted(t.params["scale"] for t in result.study.trials)
    median = scales[len(scales) // 2]
    # Uniform in log10 over [-3, 1]: median near 10**-1; a linear scale would put it near 5.
    assert 10**-1.6 < median < 10**-0.4


def test_grid_covers_every_combination_once(workdir):
    space = Space([Float("lr", 1e-3, 1e-1, log=True), Categorical("opt", ["sgd", "adam"])])
    result = shoal.tune(lambda c: c["lr"], space=space, strategy="grid", trials=100, grid_points=3,
                        storage="g.db", progress=False)
    seen = sorted((round(t.params["lr"], 6), t.params["opt"]) for t in result.study.trials)
    assert seen == sorted((lr, o) for lr in (0.001, 0.01, 0.1) for o in ("sgd", "adam"))


def test_failing_trial_is_recorded_and_study_goes_on(workdir):
    def objective(config):
        if config["x"] > 0:
            raise RuntimeError("simulated crash")
        if config["x"] < -4:
            return float("nan")
        return config["x"] ** 2

    result = shoal.tune(objective, space=Space([Float("x", -5.0, 5.0)]), strategy="random", trials=30,
                        seed=1, storage="f.db", progress=False)
    trials = result.study.trials
    assert len(trials) == 30
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and any(t.state == TrialState.COMPLETE for t in trials)
    for t in failed:
        reason = t.user_attrs["fail_reason"]
        assert ("simulated crash" in reason) == (t.params["x"] > 0)
        assert "RuntimeError" in reason or "nan" in reason
    assert result.best_params["x"] <= 0


def test_same_call_again_resumes_and_adds_nothing(workdir):
    kwargs = dict(space=quadratic_space(), strategy="tpe", seed=3, storage="r.db", study="q", progress=False)
    shoal.tune(quadratic, trials=10, **kwargs)
    again = shoal.tune(quadratic, trials=10, **kwargs)
    assert len(again.study.trials) == 10
    more = shoal.tune(quadratic, trials=14, **kwargs)
    assert len(more.study.trials) == 14
    assert len({t.number for t in more.study.trials}) == 14


def test_interrupted_trial_is_marked_and_run_again(workdir):
    storage = "sqlite:///i.db"
    study = open_study(storage, "q", "minimize")
    space = quadratic_space()
    runner = StudyRunner(study, space, trials=10, seed=0)
    job = runner.ask()
    orphan = dict(job.trial.params)
    # The process "dies" here: the trial stays RUNNING in the storage.
    assert states(optuna.load_study(study_name="q", storage=storage)) == [TrialState.RUNNING]
    result = shoal.tune(quadratic, space=space, trials=10, storage="i.db", study="q", progress=False)
    trials = result.study.trials
    first = trials[0]
    assert first.state == TrialState.FAIL and first.user_attrs["fail_reason"] == "interrupted"
    retried = [t for t in trials if t.user_attrs.get("retry_of") == 0]
    assert len(retried) == 1 and retried[0].params == orphan and retried[0].state == TrialState.COMPLETE
    # The interrupted attempt does not use up budget: 10 counted trials besides it.
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 10


def test_pruner_by_name_prunes_bad_curves(workdir):
    def objective(config, trial):
        value = 0.0
        for step in range(1, 11):
            value = config["x"] + 1.0 / step
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    result = shoal.tune(objective, space=Space([Float("x", 0.0, 10.0)]), strategy="random", trials=30,
                        pruner="median", epochs=10, seed=0, storage="p.db", progress=False)
    pruned = [t for t in result.study.trials if t.state == TrialState.PRUNED]
    complete = [t for t in result.study.trials if t.state == TrialState.COMPLETE]
    assert pruned and complete
    assert min(t.params["x"] for t in pruned) > min(t.params["x"] for t in complete)


@pytest.mark.parametrize("storage", ["s.db", "sqlite:///u.db", "j.log", "journal:k.jsonl"])
def test_storage_kinds(workdir, storage):
    shoal.tune(quadratic, space=quadratic_space(), strategy="random", trials=3, storage=storage,
               study="kinds", progress=False)
    resumed = shoal.tune(quadratic, space=quadratic_space(), strategy="random", trials=5, storage=storage,
                         study="kinds", progress=False)
    assert len(resumed.study.trials) == 5
    files = {p.name for p in workdir.iterdir()}
    assert storage.split(":")[-1].split("/")[-1] in files


def test_trial_seeds_are_distinct_and_stable():
    seeds = [trial_seed(0, n) for n in range(100)]
    assert len(set(seeds)) == 100
    assert seeds == [trial_seed(0, n) for n in range(100)]
    assert trial_seed(1, 0) != trial_seed(0, 0)


# ----------------------------------------------------------------------------- built-in presets
def test_builtin_mlp_study_records_everything(workdir):
    result = shoal.tune(data="digits", preset="mlp", strategy="random", trials=3, epochs=3, seed=0,
                        storage="b.db", progress=False, params={"width": [32, 64], "depth": [1, 2]})
    study = optuna.load_study(study_name="digits-mlp", storage="sqlite:///b.db")
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        assert "lr" in t.params
        assert sorted(t.intermediate_values) == [1, 2, 3]
        curves = t.user_attrs["curves"]
        assert len(curves["train_loss"]) == len(curves["val_loss"]) == len(curves["val_acc"]) == 3
        assert t.value == pytest.approx(curves["val_loss"][-1])
        assert t.intermediate_values[3] == pytest.approx(t.value)
        assert t.user_attrs["epochs_run"] == 3
        assert t.user_attrs["device"] == "cpu"
        assert isinstance(t.user_attrs["seed"], int)
        assert t.user_attrs["seconds"] > 0
        assert t.user_attrs["config"]["width"] in (32, 64)
    assert study.user_attrs["shoal"]["data"] == "digits"  # the source, as given: `shoal retune` reuses it
    assert study.user_attrs["shoal"]["data_description"].startswith("digits: 1797 samples")
    assert result.best_params == study.best_trial.user_attrs["config"]


@pytest.mark.parametrize("engine", ["population", "single"])
def test_builtin_diverging_trial_fails_with_reason_and_keeps_its_curve(workdir, engine):
    result = shoal.tune(data="digits", preset="mlp", strategy="random", trials=2, epochs=2, storage="d.db",
                        progress=False, engine=engine, params={"optimizer": "sgd", "lr": 1e6, "batch_norm": "off",
                                                               "width": 32, "depth": 1, "init": "he", "lr_decay": "none"})
    trials = result.study.trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert all("diverged at epoch 1" in t.user_attrs["fail_reason"] for t in trials)
    assert result.best_params is None
    for t in trials:  # the epoch it diverged in is recorded, by either engine (the single one kept nothing)
        assert t.user_attrs["epochs_run"] == 1 and len(t.user_attrs["curves"]["train_loss"]) == 1
        assert t.user_attrs["engine"] == engine


def test_builtin_kfold_and_val_acc_metric(workdir):
    result = shoal.tune(data="digits", preset="mlp", strategy="random", trials=2, epochs=2, folds=3,
                        metric="val_acc", storage="k.db", progress=False,
                        params={"width": 32, "depth": 1, "optimizer": "adam", "lr": 3e-3, "batch_size": 64})
    assert result.study.direction.name == "MAXIMIZE"
    for t in result.study.trials:
        assert len(t.user_attrs["fold_val_loss"]) == 3
        assert 0.5 < t.value <= 1.0


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"preset": "resnet"}, "Unknown preset 'resnet'"),
        ({"strategy": "bayes"}, "Unknown strategy 'bayes'"),
        ({"pruner": "asha"}, "Unknown pruner 'asha'"),
        ({"metric": "acuracy"}, "Unknown measure 'acuracy' in the 'metric' setting. Did you mean 'val_acc'"),
        ({"data": "nope.csv"}, "not found"),
        ({"data": "imagenet"}, "imagenet"),
        ({"params": {"lrr": 0.1}}, "Unknown parameter 'lrr'. Did you mean 'lr'"),
        ({"params": {"lr": {"low": 0.5, "high": 0.1}}}, "must have low < high"),
        ({"params": {"my_param": {"type": "float", "low": 0.0, "high": 1.0}}},
         "The mlp preset has no use for 'my_param': it would be sampled and recorded but change nothing"),
        ({"trials": 0}, "'trials' setting must be an integer >= 1"),
        ({"epochs": -1}, "'epochs' setting"),
        ({"bogus": 1}, "Unknown setting 'bogus'"),
        ({"preset": "cnn", "data": "tabular.csv"}, "cnn preset needs image data"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(workdir, settings, message):
    (workdir / "tabular.csv").write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    with pytest.raises(ConfigError, match=message):
        shoal.tune(storage="e.db", progress=False, **settings)
    assert not (workdir / "e.db").exists()


def test_user_objective_needs_a_space(workdir):
    with pytest.raises(ConfigError, match="needs its search space"):
        shoal.tune(quadratic, space=None, progress=False)


def test_a_user_objective_returns_named_values(workdir):
    # metric= names the key of the returned dict; a measure shoal knows keeps its direction
    # (val_acc is maximized) and the other keys are recorded beside it.
    space = Space([Float("x", 0.0, 1.0)])
    result = shoal.tune(lambda c: {"val_acc": c["x"], "val_loss": 1 - c["x"]}, space=space, metric="val_acc",
                        trials=6, storage="d.db", progress=False)
    trials = result.study.trials
    assert result.study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert result.best_value == max(t.params["x"] for t in trials)
    assert all(t.user_attrs["val_loss"] == pytest.approx(1 - t.value) for t in trials)
    assert result.study.user_attrs["shoal"]["objectives"] == ["val_acc"]
    # a float under a name; an explicit direction wins
    result = shoal.tune(lambda c: c["x"], space=space, metric="error", direction="maximize", trials=3,
                        storage="f.db", progress=False)
    assert result.best_value == max(t.value for t in result.study.trials)

    def fidelity(config, epochs, state=None):  # a fidelity objective's dict, by the same name
        step = (state or 0) + epochs
        return {"acc": config["x"] * step / (step + 1), "loss": 1.0}, step

    result = shoal.tune(fidelity, space=space, metric="acc", direction="maximize", trials=3, epochs=3,
                        storage="g.db", progress=False)
    for t in result.study.trials:
        assert t.state == TrialState.COMPLETE
        assert t.value == pytest.approx(t.params["x"] * 3 / 4)
    with pytest.raises(ConfigError, match="one direction per value"):
        shoal.tune(lambda c: c["x"], space=space, metric="a,b", direction="maximize", trials=1, progress=False)


def test_an_objective_shoal_cannot_call_is_refused_before_any_trial(workdir):
    space = Space([Float("x", 0.0, 1.0)])

    def four(config, trial, a, b):
        return 0.0

    for fn, message in ((42, "must be a function"), (four, r"four\(config, trial, a, b\) cannot be called"),
                        (lambda: 0.0, "cannot be called")):
        with pytest.raises(ConfigError, match=message):
            shoal.tune(fn, space=space, trials=2, storage="e.db", progress=False)
    assert not (workdir / "e.db").exists()

    def keyword_only(config, *, scale=2.0):  # takes the config alone: no trial is passed
        return config["x"] * scale

    result = shoal.tune(keyword_only, space=space, trials=2, storage="k.db", progress=False)
    assert all(t.value == pytest.approx(2 * t.params["x"]) for t in result.study.trials)


def test_example_experiment_file_is_valid():
    from pathlib import Path

    from shoal.study import load_experiment

    exp = load_experiment(Path(__file__).resolve().parents[2] / "examples" / "digits-mlp.toml")
    space = exp.space()
    assert (exp.strategy, exp.trials, exp.pruner) == ("tpe", 40, "median")
    assert space["optimizer"].choices == ("adam", "momentum", "rmsprop")
    assert (space["lr"].low, space["lr"].high, space["lr"].log) == (1e-4, 1e-1, True)
    assert space["batch_size"].values() == [32, 64, 128, 256]


def test_a_resumed_seeded_study_draws_new_configurations(workdir):
    """Running the same seeded command with a larger budget goes on sampling: the sampler does not
    restart its stream at the study seed (which repeated every stored trial's parameters)."""
    from shoal.space import Float, Space

    space = Space([Float("x", 0.0, 1.0)])
    first = shoal.tune(lambda c: c["x"], space=space, strategy="random", trials=3, storage="r.log", study="r",
                       seed=4, progress=False)
    before = [t.params["x"] for t in sorted(first.study.trials, key=lambda t: t.number)]
    again = shoal.tune(lambda c: c["x"], space=space, strategy="random", trials=6, storage="r.log", study="r",
                       seed=4, progress=False)
    xs = [t.params["x"] for t in sorted(again.study.trials, key=lambda t: t.number)]
    assert len(xs) == 6 and len(set(xs)) == 6
    assert xs[:3] == before
    # and the same two commands in a fresh storage give the same six values: still reproducible
    shoal.tune(lambda c: c["x"], space=space, strategy="random", trials=3, storage="s.log", study="r", seed=4,
               progress=False)
    repeat = shoal.tune(lambda c: c["x"], space=space, strategy="random", trials=6, storage="s.log", study="r",
                        seed=4, progress=False)
    assert [t.params["x"] for t in sorted(repeat.study.trials, key=lambda t: t.number)] == xs


def test_a_spawned_trial_is_written_without_reading_the_study(workdir, monkeypatch):
    """PBT's copies are trials the engine configures itself: asking for them re-read every running
    trial from the storage (the whole population). They are written in one go instead, and come out
    as ``enqueue_trial`` and ``ask`` would make them: params fixed, attributes set, running."""
    from optuna.storages._cached_storage import _CachedStorage

    study = open_study("sqlite:///s.db", "q", "minimize")
    runner = StudyRunner(study, quadratic_space(), trials=10, seed=0)
    running = [runner.ask() for _ in range(3)]
    reads = []
    read = _CachedStorage._read_trials_from_remote_storage
    monkeypatch.setattr(_CachedStorage, "_read_trials_from_remote_storage",
                        lambda self, study_id: (reads.append(study_id), read(self, study_id))[1])
    job = runner.spawn(dict(running[0].config), {"pbt": {"parent": 0}}, seed=7)
    assert reads == []
    stored = optuna.load_study(study_name="q", storage="sqlite:///s.db").trials[job.number]
    assert job.number == 3 and stored.state == TrialState.RUNNING
    assert stored.params == running[0].trial.params and job.config == running[0].config
    assert stored.system_attrs["fixed_params"] == stored.params
    assert stored.user_attrs["pbt"] == {"parent": 0} and stored.user_attrs["seed"] == 7


def test_quiet_from_python_points_to_progress(workdir):
    with pytest.raises(ConfigError, match=r"Unknown setting 'quiet'.*progress=False"):
        shoal.tune(data="digits", quiet=True, storage="q.db")


def test_another_function_of_the_same_name_does_not_join_a_study(workdir):
    # Two scripts that both define `objective` and share a storage: the default study name is the
    # function's, so the second would have continued the first's study with another function.
    import importlib.util

    def load(name):
        (workdir / f"{name}.py").write_text("def objective(config):\n    return config['x'] ** 2\n")
        spec = importlib.util.spec_from_file_location(name, workdir / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.objective

    first, second = load("first"), load("second")
    space = Space([Float("x", -1.0, 1.0)])
    shoal.tune(first, space=space, trials=2, storage="s.db", progress=False)
    shoal.tune(first, space=space, trials=3, storage="s.db", progress=False)  # the same function goes on
    with pytest.raises(ConfigError, match=r"made by objective in .*first\.py; this run tunes objective in .*second\.py"):
        shoal.tune(second, space=space, trials=4, storage="s.db", progress=False)
    assert len(optuna.load_study(study_name="objective", storage="sqlite:///s.db").trials) == 3
    # named on purpose, it continues
    assert len(shoal.tune(second, space=space, trials=4, storage="s.db", study="objective",
                          progress=False).study.trials) == 4


def test_an_experiment_file_that_is_not_text_or_is_a_folder_is_named_as_such(workdir):
    from shoal.study import load_experiment

    (workdir / "binary.toml").write_bytes(b"\xff\xfe\x00data")
    with pytest.raises(ConfigError, match=r"'binary.toml' is not text \(TOML is UTF-8\)"):
        load_experiment("binary.toml")
    (workdir / "runs").mkdir()
    with pytest.raises(ConfigError, match=r"'runs' is a folder, not an experiment file"):
        load_experiment("runs")
