"""Preset spaces: every classic hyperparameter, on its scale, with its condition; the engine accepts them."""

from __future__ import annotations

import optuna
import pytest
from optuna.samplers import RandomSampler

from shoal._errors import ConfigError
from shoal.space import PRESETS, Categorical, Float, Int, Space, cnn, mlp, preset

optuna.logging.set_verbosity(optuna.logging.WARNING)

TRAINING = ["optimizer", "lr", "momentum", "rmsprop_alpha", "beta1", "beta2", "eps", "batch_size",
            "weight_decay", "l1", "lr_decay", "step_size", "step_gamma", "exp_gamma"]
LAYERS = ["init", "activation", "batch_norm", "dropout"]


def test_mlp_names_in_order():
    assert mlp().names() == TRAINING + ["depth", "width", "shape"] + LAYERS


def test_cnn_names_in_order():
    assert cnn().names() == TRAINING + ["conv_layers", "channels", "kernel_size", "width"] + LAYERS


@pytest.mark.parametrize("make", [mlp, cnn], ids=["mlp", "cnn"])
def test_training_parameters(make):
    s = make()
    assert s["optimizer"] == Categorical("optimizer", ["sgd", "momentum", "rmsprop", "adam"])
    assert s["lr"] == Float("lr", 1e-4, 1.0, log=True)
    assert s["momentum"] == Float("momentum", 0.5, 0.99, when={"optimizer": "momentum"})
    assert s["rmsprop_alpha"] == Float("rmsprop_alpha", 0.8, 0.999, when={"optimizer": "rmsprop"})
    assert s["beta1"] == Float("beta1", 0.8, 0.99, when={"optimizer": "adam"})
    assert s["beta2"] == Float("beta2", 0.9, 0.9999, when={"optimizer": "adam"})
    assert s["eps"] == Float("eps", 1e-10, 1e-6, log=True, when={"optimizer": ["rmsprop", "adam"]})
    assert s["batch_size"] == Int("batch_size", 16, 512, pow2=True)
    assert s["batch_size"].values() == [16, 32, 64, 128, 256, 512]
    assert s["weight_decay"] == Float("weight_decay", 1e-6, 1e-2, log=True, off=0.0)
    assert s["l1"] == Float("l1", 1e-7, 1e-3, log=True, off=0.0)
    assert s["lr_decay"] == Categorical("lr_decay", ["none", "step", "exponential", "cosine"])
    assert s["step_size"] == Int("step_size", 2, 10, when={"lr_decay": "step"})
    assert s["step_gamma"] == Float("step_gamma", 0.1, 0.9, when={"lr_decay": "step"})
    assert s["exp_gamma"] == Float("exp_gamma", 0.8, 0.99, when={"lr_decay": "exponential"})
    assert s["init"] == Categorical("init", ["normal", "uniform", "xavier", "he"])
    assert s["batch_norm"] == Categorical("batch_norm", ["off", "before", "after"])
    assert s["dropout"] == Float("dropout", 0.0, 0.5)
    assert {"relu", "tanh", "sigmoid"} <= set(s["activation"].choices)


def test_mlp_architecture_parameters():
    s = mlp()
    assert s["depth"] == Int("depth", 1, 4)
    assert s["width"] == Int("width", 32, 512, pow2=True)
    assert s["shape"] == Categorical("shape", ["constant", "taper"])
    assert "conv_layers" not in s


def test_cnn_architecture_parameters():
    s = cnn()
    assert s["conv_layers"] == Int("conv_layers", 1, 3)
    assert s["channels"] == Int("channels", 8, 64, pow2=True)
    assert s["kernel_size"] == Categorical("kernel_size", [3, 5])
    assert s["width"] == Int("width", 32, 256, pow2=True)
    assert "depth" not in s and "shape" not in s


def test_preset_by_name_returns_a_fresh_space():
    assert sorted(PRESETS) == ["cnn", "mlp"]
    a = preset("mlp")
    a.fix("lr", 0.1).remove("shape")
    b = preset("mlp")
    assert isinstance(b, Space) and b["lr"] == Float("lr", 1e-4, 1.0, log=True) and "shape" in b
    assert preset("cnn").names() == cnn().names()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("mpl", r"Unknown preset 'mpl'\. Did you mean 'mlp'\? The presets are: mlp, cnn\."),
        ("transformer", r"Unknown preset 'transformer'\. The presets are: mlp, cnn\. For your own model"),
    ],
)
def test_unknown_preset(name, message):
    with pytest.raises(ConfigError, match=message):
        preset(name)


@pytest.mark.parametrize("make", [mlp, cnn], ids=["mlp", "cnn"])
def test_every_preset_parameter_is_an_engine_hyperparameter(make):
    from shoal.engine import DEFAULTS

    assert set(make().names()) <= set(DEFAULTS)


@pytest.mark.parametrize("make", [mlp, cnn], ids=["mlp", "cnn"])
def test_engine_accepts_every_choice_and_every_sampled_config(make):
    from shoal.engine import normalize

    space = make()
    for p in space:
        if isinstance(p, Categorical):
            for choice in p.choices:
                assert normalize({p.name: choice})[p.name] == choice
        elif isinstance(p, (Float, Int)):
            for value in p.grid(3):
                assert normalize({p.name: value})[p.name] == value
    study = optuna.create_study(sampler=RandomSampler(seed=0))
    for _ in range(50):
        config = space.sample(study.ask())
        assert normalize(config) == {**normalize({}), **config}


def test_describe_leaves_out_parameters_a_narrowed_space_can_no_longer_reach():
    # coarse-to-fine printed "momentum ... if optimizer=momentum" after momentum was dropped
    space = preset("mlp").update({"optimizer": ["adam", "rmsprop"], "lr_decay": "none"})
    assert space.unreachable() == ["momentum", "step_size", "step_gamma", "exp_gamma"]
    text = space.describe()
    assert "momentum:" not in text and "step_size:" not in text and "beta1:" in text
    assert text.splitlines()[-1] == "(not reachable here: momentum, step_size, step_gamma, exp_gamma)"
    assert preset("mlp").unreachable() == []
