"""Parameters and Space: Optuna distributions, sampling scales, conditions, overrides, grids."""

from __future__ import annotations

import math
import statistics

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import GridSampler, RandomSampler
from optuna.trial import FixedTrial

from shoal._errors import ConfigError
from shoal.space import Categorical, Fixed, Float, Int, Space, mlp, parse_override, parse_value, preset

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _random_configs(space: Space, n: int, seed: int = 0) -> list[tuple[dict, dict]]:
    """``n`` (config, stored trial params) pairs sampled on a real study with a seeded RandomSampler."""
    study = optuna.create_study(sampler=RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        config = space.sample(trial)
        study.tell(trial, 0.0)
        out.append((config, dict(trial.params)))
    return out


def _small_space() -> Space:
    return Space([
        Categorical("optimizer", ["sgd", "momentum", "adam"]),
        Float("lr", 1e-4, 1.0, log=True),
        Float("momentum", 0.5, 0.99, when={"optimizer": "momentum"}),
        Float("beta1", 0.8, 0.99, when={"optimizer": "adam"}),
        Int("batch_size", 16, 512, pow2=True),
        Float("weight_decay", 1e-6, 1e-2, log=True, off=0.0),
    ])


# --------------------------------------------------------------------------- distributions

@pytest.mark.parametrize(
    ("param", "expected"),
    [
        (Float("lr", 1e-4, 1.0, log=True), FloatDistribution(1e-4, 1.0, log=True)),
        (Float("dropout", 0.0, 0.5), FloatDistribution(0.0, 0.5)),
        (Float("x", 0.0, 1.0, step=0.25), FloatDistribution(0.0, 1.0, step=0.25)),
        (Int("depth", 1, 4), IntDistribution(1, 4)),
        (Int("units", 1, 1000, log=True), IntDistribution(1, 1000, log=True)),
        (Int("k", 2, 10, step=2), IntDistribution(2, 10, step=2)),
        (Int("batch_size", 16, 512, pow2=True), CategoricalDistribution([16, 32, 64, 128, 256, 512])),
        (Int("width", 20, 300, pow2=True), CategoricalDistribution([32, 64, 128, 256])),
        (Categorical("optimizer", ["sgd", "adam"]), CategoricalDistribution(["sgd", "adam"])),
        (Fixed("kernel_size", 3), CategoricalDistribution([3])),
    ],
    ids=["float-log", "float-linear", "float-step", "int", "int-log", "int-step", "pow2", "pow2-inner",
         "categorical", "fixed"],
)
def test_distribution(param, expected):
    assert param.distribution() == expected


def test_pow2_values_are_the_powers_of_two_in_range():
    assert Int("b", 16, 512, pow2=True).values() == [16, 32, 64, 128, 256, 512]
    assert Int("b", 3, 100, pow2=True).values() == [4, 8, 16, 32, 64]
    assert Int("b", 1, 2, pow2=True).values() == [1, 2]


# --------------------------------------------------------------------------- parameter validation

@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Float("lr", 1.0, 0.1), r"The range of parameter 'lr' must have low < high\. Got low=1\.0, high=0\.1"),
        (lambda: Float("lr", 0.5, 0.5), r"parameter 'lr' must have low < high"),
        (lambda: Float("lr", 0.0, 1.0, log=True), r"parameter 'lr' is on a log scale, so its low end must be > 0\. Got low=0\.0"),
        (lambda: Float("lr", -1.0, 1.0, log=True), r"'lr' is on a log scale.*Got low=-1\.0"),
        (lambda: Float("lr", 1e-4, 1.0, log=True, step=0.1), r"'lr' cannot have both log=true and a step"),
        (lambda: Float("x", float("nan"), 1.0), r"The 'low' of parameter 'x' must be a finite number\. Got nan"),
        (lambda: Float("x", 0.0, math.inf), r"The 'high' of parameter 'x' must be a finite number\. Got inf"),
        (lambda: Float("x", "0", 1.0), r"The 'low' of parameter 'x' must be a finite number\. Got '0'"),
        (lambda: Float("x", True, 2.0), r"The 'low' of parameter 'x' must be a finite number\. Got True"),
        (lambda: Int("depth", 1.5, 4), r"The 'low' of integer parameter 'depth' must be an integer\. Got 1\.5"),
        (lambda: Int("depth", 4, 1), r"The range of parameter 'depth' must have low < high\. Got low=4, high=1"),
        (lambda: Int("n", 0, 10, log=True), r"'n' is on a log / power-of-two scale, so its low end must be >= 1\. Got low=0"),
        (lambda: Int("b", 0, 64, pow2=True), r"'b' is on a log / power-of-two scale"),
        (lambda: Int("b", 5, 7, pow2=True), r"The range \[5, 7\] of power-of-two parameter 'b' holds no power of two"),
        (lambda: Int("k", 1, 9, step=0), r"The step of parameter 'k' must be >= 1\. Got 0"),
        (lambda: Categorical("opt", []), r"The parameter 'opt' needs at least one choice"),
        (lambda: Categorical("opt", "sgd"), r"The choices of parameter 'opt' must be a list\. Got 'sgd'"),
        (lambda: Categorical("opt", ["sgd", "sgd"]), r"The choices of parameter 'opt' repeat a value: \['sgd', 'sgd'\]"),
        (lambda: Categorical("opt", [{"a": 1}]), r"must be strings, numbers or booleans\. Got \{'a': 1\}"),
        (lambda: Float("1lr", 0.0, 1.0), r"A parameter name must be a Python identifier such as 'lr'\. Got '1lr'"),
        (lambda: Float("m", 0.0, 1.0, when={"optimizer": []}),
         r"The condition of parameter 'm' on 'optimizer' lists no value"),
    ],
)
def test_bad_parameter_definitions(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_int_log_with_step_is_a_config_error():
    with pytest.raises(ConfigError, match=r"'n'.*log.*step"):
        Int("n", 1, 100, log=True, step=2)


def test_condition_values_are_normalized_to_tuples():
    p = Float("eps", 1e-10, 1e-6, log=True, when={"optimizer": ["rmsprop", "adam"]})
    q = Float("momentum", 0.5, 0.99, when={"optimizer": "momentum"})
    assert p.when == {"optimizer": ("rmsprop", "adam")}
    assert q.when == {"optimizer": ("momentum",)}
    assert p.active({"optimizer": "adam"}) and not p.active({"optimizer": "sgd"})
    assert not q.active({})  # the parent not chosen: inactive


def test_describe():
    assert Float("lr", 1e-4, 1.0, log=True).describe() == "lr: float [0.0001, 1] log"
    assert Float("weight_decay", 1e-6, 1e-2, log=True, off=0.0).describe() == (
        "weight_decay: float [1e-06, 0.01] log or off (0)")
    assert Int("batch_size", 16, 64, pow2=True).describe() == "batch_size: int [16, 32, 64]"
    assert Int("k", 2, 10, step=2).describe() == "k: int [2, 10] step 2"
    assert Float("momentum", 0.5, 0.99, when={"optimizer": "momentum"}).describe() == (
        "momentum: float [0.5, 0.99]  if optimizer=momentum")
    assert Categorical("opt", ["sgd", "adam"]).describe() == "opt: one of ['sgd', 'adam']"
    assert Fixed("k", 3).describe() == "k: fixed 3"


# --------------------------------------------------------------------------- sampling

def test_log_scale_sampling_spreads_over_decades():
    space = Space([Float("lr", 1e-4, 1.0, log=True), Float("dropout", 0.0, 1.0)])
    configs = [c for c, _ in _random_configs(space, 300)]
    lrs = [c["lr"] for c in configs]
    assert all(1e-4 <= v <= 1.0 for v in lrs)
    # Log-uniform: the median of log10(lr) sits mid-way between -4 and 0; uniform would put it near 0.5.
    assert statistics.median(math.log10(v) for v in lrs) == pytest.approx(-2.0, abs=0.35)
    assert sum(v < 1e-2 for v in lrs) > 100  # half the draws below 1e-2
    # The linear parameter is spread linearly.
    assert statistics.median(c["dropout"] for c in configs) == pytest.approx(0.5, abs=0.1)


def test_int_sampling_ranges_and_scales():
    space = Space([
        Int("depth", 1, 4),
        Int("units", 1, 1000, log=True),
        Int("k", 3, 11, step=2),
        Int("batch_size", 16, 512, pow2=True),
        Float("frac", 0.0, 1.0, step=0.25),
    ])
    configs = [c for c, _ in _random_configs(space, 300, seed=1)]
    assert {c["depth"] for c in configs} == {1, 2, 3, 4}
    assert {c["k"] for c in configs} == {3, 5, 7, 9, 11}
    assert {c["batch_size"] for c in configs} == {16, 32, 64, 128, 256, 512}
    assert {c["frac"] for c in configs} == {0.0, 0.25, 0.5, 0.75, 1.0}
    units = [c["units"] for c in configs]
    assert all(isinstance(u, int) and 1 <= u <= 1000 for u in units)
    assert statistics.median(math.log10(u) for u in units) == pytest.approx(1.5, abs=0.35)
    assert all(type(c["batch_size"]) is int for c in configs)


def test_conditional_parameters_appear_only_when_their_condition_holds():
    pairs = _random_configs(mlp(), 200, seed=2)
    seen = {"momentum": 0, "rmsprop": 0, "adam": 0, "sgd": 0, "step": 0, "exponential": 0}
    for config, params in pairs:
        opt, decay = config["optimizer"], config["lr_decay"]
        seen[opt] += 1
        seen[decay] = seen.get(decay, 0) + 1
        assert ("momentum" in config) == (opt == "momentum")
        assert ("rmsprop_alpha" in config) == (opt == "rmsprop")
        assert ("beta1" in config) == ("beta2" in config) == (opt == "adam")
        assert ("eps" in config) == (opt in ("rmsprop", "adam"))
        assert ("step_size" in config) == ("step_gamma" in config) == (decay == "step")
        assert ("exp_gamma" in config) == (decay == "exponential")
        # Inactive parameters are never shown to the sampler either.
        switched_off = {k for k in ("weight_decay", "l1") if not params[f"{k}_on"]}
        assert set(params) == (set(config) - switched_off) | {"weight_decay_on", "l1_on"}
    assert all(count > 10 for count in seen.values()), seen  # every branch was exercised


def test_off_values_via_switch():
    pairs = _random_configs(_small_space(), 100, seed=3)
    off = [(c, p) for c, p in pairs if p["weight_decay_on"] is False]
    on = [(c, p) for c, p in pairs if p["weight_decay_on"] is True]
    assert len(off) > 20 and len(on) > 20
    for config, params in off:
        assert config["weight_decay"] == 0.0 and "weight_decay" not in params
    for config, params in on:
        assert 1e-6 <= config["weight_decay"] <= 1e-2 and params["weight_decay"] == config["weight_decay"]


def test_sample_on_fixed_trial():
    space = _small_space()
    config = space.sample(FixedTrial({"optimizer": "adam", "lr": 0.01, "beta1": 0.9, "batch_size": 64,
                                      "weight_decay_on": False}))
    assert config == {"optimizer": "adam", "lr": 0.01, "beta1": 0.9, "batch_size": 64, "weight_decay": 0.0}


def test_config_from_params_rebuilds_sampled_configs():
    space = mlp().fix("depth", 2).override("activation", ["relu"])
    pairs = _random_configs(space, 40, seed=4)
    for config, params in pairs:
        rebuilt = space.config_from_params(params)
        assert rebuilt == config
        assert rebuilt["depth"] == 2 and rebuilt["activation"] == "relu"  # fixed values come back too


# --------------------------------------------------------------------------- Space structure

def test_space_order_and_access():
    space = _small_space()
    assert space.names() == ["optimizer", "lr", "momentum", "beta1", "batch_size", "weight_decay"]
    assert len(space) == 6 and "lr" in space and "eps" not in space
    assert space["lr"] == Float("lr", 1e-4, 1.0, log=True)
    assert repr(space).startswith("Space(['optimizer', 'lr'")
    copy = space.copy()
    copy.remove("weight_decay")
    assert "weight_decay" in space and "weight_decay" not in copy


def test_unknown_parameter_suggests_close_name():
    space = _small_space()
    with pytest.raises(ConfigError, match=r"Unknown parameter 'lrr'\. Did you mean 'lr'\? This space has: optimizer, lr"):
        space["lrr"]
    with pytest.raises(ConfigError, match=r"Unknown parameter 'optimiser'\. Did you mean 'optimizer'\?"):
        space.override("optimiser", ["adam"])
    with pytest.raises(ConfigError, match=r"Unknown parameter 'zzz'\. This space has"):
        space.override("zzz", 1)


def test_condition_must_name_an_earlier_parameter():
    with pytest.raises(ConfigError, match=r"'momentum' is conditional on 'optimizer', which is not defined before it"):
        Space([Float("momentum", 0.5, 0.9, when={"optimizer": "momentum"}), Categorical("optimizer", ["sgd"])])
    with pytest.raises(ConfigError, match=r"'momentum' is conditional on 'opt', which is not defined before it"):
        _small_space().add(Float("momentum", 0.5, 0.9, when={"opt": "momentum"}))
    with pytest.raises(ConfigError, match=r"A space holds Float, Int, Categorical or Fixed parameters\. Got 3"):
        Space([3])


def test_replacing_a_parameter_keeps_its_position():
    space = _small_space()
    space.add(Float("lr", 1e-3, 0.1))
    assert space.names()[1] == "lr" and space["lr"].log is False


def test_remove():
    space = _small_space()
    with pytest.raises(ConfigError, match=r"Cannot remove parameter 'optimizer': momentum, beta1 depend on it"):
        space.remove("optimizer")
    space.remove("momentum").remove("beta1").remove("optimizer")
    assert space.names() == ["lr", "batch_size", "weight_decay"]
    with pytest.raises(ConfigError, match=r"Unknown parameter 'optimizer'"):
        space.remove("optimizer")


# --------------------------------------------------------------------------- overrides

def test_override_scalar_fixes():
    space = _small_space().override("lr", 0.01)
    assert space["lr"] == Fixed("lr", 0.01)
    config, params = _random_configs(space, 1)[0]
    assert config["lr"] == 0.01 and "lr" not in params


def test_fix_categorical_to_a_value_it_never_had():
    space = _small_space()
    with pytest.raises(ConfigError, match=r"Cannot fix parameter 'optimizer' to 'adamw': its choices are \['sgd', 'momentum', 'adam'\]"):
        space.override("optimizer", "adamw")
    # A number of the same type as the choices is allowed (e.g. a kernel size not in the list).
    space = Space([Categorical("kernel_size", [3, 5])]).override("kernel_size", 7)
    assert space["kernel_size"] == Fixed("kernel_size", 7)


def test_override_list_gives_choices_and_keeps_condition():
    space = _small_space().override("optimizer", ["adam", "sgd"])
    assert space["optimizer"] == Categorical("optimizer", ["adam", "sgd"])
    space.override("momentum", [0.8, 0.9])
    assert space["momentum"] == Categorical("momentum", [0.8, 0.9], when={"optimizer": "momentum"})
    space.override("batch_size", [64])  # one value: fixed
    assert space["batch_size"] == Fixed("batch_size", 64)


def test_override_dict_narrows_and_keeps_scale_and_condition():
    space = _small_space()
    space.override("lr", {"low": 1e-3, "high": 0.3})
    assert space["lr"] == Float("lr", 1e-3, 0.3, log=True)
    space.override("batch_size", {"low": 32, "high": 128})
    assert space["batch_size"].values() == [32, 64, 128]
    space.override("momentum", {"high": 0.9})
    assert space["momentum"] == Float("momentum", 0.5, 0.9, when={"optimizer": "momentum"})
    space.override("weight_decay", {"low": 1e-5})
    assert space["weight_decay"].off == 0.0 and space["weight_decay"].log
    space.override("lr", {"log": False, "low": 0.0})
    assert space["lr"] == Float("lr", 0.0, 0.3)


def test_override_int_accepts_integral_floats():
    space = Space([Int("depth", 1, 4)]).override("depth", {"low": 2.0, "high": 3.0})
    assert space["depth"] == Int("depth", 2, 3)
    assert type(space["depth"].low) is int


def test_override_dict_adds_new_parameters():
    space = _small_space()
    space.override("warmup", {"type": "int", "low": 0, "high": 5})
    space.override("nesterov", {"type": "categorical", "choices": [True, False], "when": {"optimizer": "momentum"}})
    space.override("seed_offset", {"type": "int", "value": 3})
    assert space.names()[-3:] == ["warmup", "nesterov", "seed_offset"]
    assert space["warmup"] == Int("warmup", 0, 5)
    assert space["nesterov"].when == {"optimizer": ("momentum",)}
    assert space["seed_offset"] == Fixed("seed_offset", 3)
    config = space.sample(FixedTrial({"optimizer": "sgd", "lr": 0.1, "batch_size": 16,
                                      "weight_decay_on": False, "warmup": 2}))
    assert config["warmup"] == 2 and "nesterov" not in config and config["seed_offset"] == 3


def test_override_dict_value_fixes_existing():
    space = _small_space().override("lr", {"value": 0.05})
    assert space["lr"] == Fixed("lr", 0.05)


def test_override_param_instance():
    space = _small_space().override("lr", Float("lr", 1e-3, 1e-1, log=True))
    assert space["lr"].low == 1e-3
    with pytest.raises(ConfigError, match=r"Parameter given for 'lr' is named 'eta'"):
        space.override("lr", Float("eta", 1e-3, 1e-1))


@pytest.mark.parametrize(
    ("name", "spec", "message"),
    [
        ("lr", {"low": 2.0}, r"The range of parameter 'lr' must have low < high\. Got low=2\.0, high=1\.0"),
        ("lr", {"low": 0.0}, r"The parameter 'lr' is on a log scale, so its low end must be > 0"),
        ("batch_size", {"low": 600, "high": 1000}, r"power-of-two parameter 'batch_size' holds no power of two"),
        ("lr", {"lo": 1e-3}, r"Unknown field\(s\) \['lo'\] for parameter 'lr'\. Allowed: type, when"),
        ("warmup", {"low": 0, "high": 5}, r"Unknown parameter 'warmup'\."),
        ("warmup", {"type": "bool"}, r"The type of parameter 'warmup' must be one of float, int, categorical\. Got 'bool'"),
        ("warmup", {"type": "float", "choices": [1, 2]}, r"The parameter 'warmup' is a float: choices does not apply to it\. A float takes high, log, low, off, step"),
        ("warmup", {"type": "int", "low": 0, "high": 3, "when": {"schedule": "x"}},
         r"'warmup' is conditional on 'schedule', which is not defined before it"),
    ],
)
def test_bad_overrides(name, spec, message):
    with pytest.raises(ConfigError, match=message):
        _small_space().override(name, spec)


def test_reopening_a_fixed_conditional_parameter_keeps_its_condition():
    space = _small_space().fix("momentum", 0.9)
    assert space["momentum"].when == {"optimizer": ("momentum",)}
    space.override("momentum", {"low": 0.5, "high": 0.9})
    assert space["momentum"] == Float("momentum", 0.5, 0.9, when={"optimizer": "momentum"})


def test_update_applies_several_overrides():
    space = _small_space().update({"optimizer": ["sgd", "momentum"], "lr": {"high": 0.1}, "batch_size": 32})
    assert space["optimizer"].choices == ("sgd", "momentum")
    assert space["lr"].high == 0.1 and space["batch_size"] == Fixed("batch_size", 32)


# --------------------------------------------------------------------------- command-line overrides

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lr=0.01", ("lr", 0.01)),
        ("depth=3", ("depth", 3)),
        ("lr=1e-4:1e-1", ("lr", {"low": 1e-4, "high": 0.1})),
        ("lr=1e-4:1e-1:log", ("lr", {"low": 1e-4, "high": 0.1, "log": True})),
        ("lr=0:1:linear", ("lr", {"low": 0, "high": 1, "log": False})),
        ("batch_size=32:256:pow2", ("batch_size", {"low": 32, "high": 256, "pow2": True})),
        ("optimizer=adam,sgd", ("optimizer", ["adam", "sgd"])),
        ("kernel_size=3,5", ("kernel_size", [3, 5])),
        (" optimizer = adam ", ("optimizer", "adam")),
        ("batch_norm=off", ("batch_norm", "off")),  # "off" is a real choice, not False
        ("nesterov=true", ("nesterov", True)),
    ],
)
def test_parse_override(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr", r"A parameter override must look like name=value, name=low:high or name=a,b,c\. Got 'lr'"),
        ("lr=", r"The override 'lr=' gives no value after '='"),
        ("lr=1e-4:1e-1:cubic", r"A range override must look like name=low:high, optionally followed by :log"),
        ("lr=a:b", r"The range in 'lr=a:b' must be two numbers, like lr=1e-4:1e-1"),
        ("lr=1e-4:", r"The range in 'lr=1e-4:' must be two numbers"),
    ],
)
def test_parse_override_bad_forms(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_override(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [("0.01", 0.01), ("64", 64), ("true", True), ("No", False), ("none", "none"), ("adam", "adam"), ("1e-3", 1e-3)],
)
def test_parse_value(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


def test_parsed_overrides_apply_to_the_preset():
    space = mlp()
    for text in ("lr=1e-4:1e-1:log", "batch_size=32:128", "optimizer=adam,sgd", "depth=2", "dropout=0:0.3"):
        space.override(*parse_override(text))
    assert space["lr"] == Float("lr", 1e-4, 0.1, log=True)
    assert space["batch_size"].values() == [32, 64, 128]
    assert space["optimizer"].choices == ("adam", "sgd")
    assert space["depth"] == Fixed("depth", 2)
    assert space["dropout"] == Float("dropout", 0.0, 0.3)


def test_cli_override_lr_decay_none():
    space = mlp()
    space.override(*parse_override("lr_decay=none"))
    assert space["lr_decay"] == Fixed("lr_decay", "none")
    space = mlp()
    space.override(*parse_override("lr_decay=none,cosine"))
    assert space["lr_decay"].choices == ("none", "cosine")


# --------------------------------------------------------------------------- grids

def test_param_grids():
    assert Float("lr", 1e-4, 1.0, log=True).grid(5) == [1e-4, 1e-3, 1e-2, 0.1, 1.0]
    assert Float("dropout", 0.0, 0.5).grid(3) == [0.0, 0.25, 0.5]
    assert Float("x", 0.0, 1.0, step=0.25).grid(3) == [0.0, 0.5, 1.0]
    assert Float("x", 0.0, 1.0).grid(1) == [0.0]
    assert Int("batch_size", 16, 512, pow2=True).grid(6) == [16, 32, 64, 128, 256, 512]
    assert Int("batch_size", 16, 512, pow2=True).grid(10) == [16, 32, 64, 128, 256, 512]
    assert Int("batch_size", 16, 512, pow2=True).grid(2) == [16, 512]
    assert Int("depth", 1, 3).grid(5) == [1, 2, 3]
    assert Int("units", 1, 10000, log=True).grid(5) == [1, 10, 100, 1000, 10000]
    assert Int("units", 0, 1000).grid(3) == [0, 500, 1000]
    assert Categorical("opt", ["sgd", "adam"]).grid(7) == ["sgd", "adam"]
    assert Fixed("k", 3).grid(4) == [3]


def test_space_grid_and_size():
    space = Space([
        Categorical("optimizer", ["sgd", "adam"]),
        Float("lr", 1e-3, 1e-1, log=True),
        Int("batch_size", 32, 128, pow2=True),
        Float("weight_decay", 1e-4, 1e-2, log=True, off=0.0),
        Fixed("depth", 2),
        Categorical("activation", ["relu"]),
    ])
    assert space.grid(3) == {
        "optimizer": ["sgd", "adam"],
        "lr": [1e-3, 1e-2, 1e-1],
        "batch_size": [32, 64, 128],
        "weight_decay_on": [True, False],
        "weight_decay": [1e-4, 1e-3, 1e-2],
    }
    assert space.grid_size(3) == 2 * 3 * 3 * 2 * 3
    assert space.grid_size(2) == 2 * 2 * 2 * 2 * 2


def test_grid_drives_optuna_grid_sampler():
    space = Space([Categorical("optimizer", ["sgd", "adam"]), Float("lr", 1e-3, 1e-1, log=True), Fixed("depth", 2)])
    study = optuna.create_study(sampler=GridSampler(space.grid(3), seed=0))
    seen = []

    def objective(trial):
        config = space.sample(trial)
        seen.append((config["optimizer"], config["lr"], config["depth"]))
        return 0.0

    study.optimize(objective, n_trials=20)  # the sampler stops the study once the grid is done
    assert len(seen) == space.grid_size(3) == 6
    assert set(seen) == {(o, lr, 2) for o in ("sgd", "adam") for lr in (1e-3, 1e-2, 1e-1)}


def test_grid_leaves_out_parameters_no_configuration_activates():
    space = preset("mlp").update({"optimizer": "sgd", "lr": {"low": 1e-3, "high": 1e-1}})
    grid = space.grid(3)
    # momentum, rmsprop_alpha, beta1, beta2 and eps apply only to other optimizers
    assert not {"momentum", "rmsprop_alpha", "beta1", "beta2", "eps"} & set(grid)
    assert "lr" in grid
    open_space = preset("mlp").update({"optimizer": ["sgd", "momentum"]})
    assert "momentum" in open_space.grid(3) and "beta1" not in open_space.grid(3)


def test_unconditional_distributions_are_what_every_configuration_suggests():
    space = Space([
        Categorical("optimizer", ["sgd", "momentum"]),
        Float("momentum", 0.5, 0.99, when={"optimizer": "momentum"}),  # conditional: left out
        Float("lr", 1e-4, 1.0, log=True),
        Float("weight_decay", 1e-6, 1e-2, log=True, off=0.0),  # its on/off switch, not the value
        Int("depth", 1, 4),
        Categorical("activation", ["relu"]),  # one choice: never suggested
        Fixed("epochs_warmup", 2),
    ])
    assert space.unconditional_distributions() == {
        "optimizer": CategoricalDistribution(["sgd", "momentum"]),
        "lr": FloatDistribution(1e-4, 1.0, log=True),
        "weight_decay_on": CategoricalDistribution([True, False]),
        "depth": IntDistribution(1, 4),
    }


def test_a_parameter_named_twice_is_refused():
    with pytest.raises(ConfigError, match="'lr' is defined twice"):
        Space([Float("lr", 1e-4, 1.0, log=True), Float("lr", 5.0, 6.0)])
    # add() still replaces in place, as overrides do
    s = Space([Float("lr", 1e-4, 1.0, log=True)]).add(Float("lr", 5.0, 6.0))
    assert s["lr"].low == 5.0 and len(s) == 1
