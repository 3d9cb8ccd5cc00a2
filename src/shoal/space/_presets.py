"""Preset spaces for the built-in model families, covering every classic hyperparameter.

Scales follow common practice: log for the learning rate, weight decay, L1 and epsilon; powers of
two for batch size, width and channels; linear for dropout and momentum-like coefficients.
"""

from __future__ import annotations

import difflib

from shoal._errors import ConfigError
from shoal.space._params import Categorical, Float, Int, Param
from shoal.space._space import Space

__all__ = ["ACTIVATIONS", "INITS", "OPTIMIZERS", "PRESETS", "preset"]

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
INITS = ("normal", "uniform", "xavier", "he")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "elu", "gelu", "silu")
LR_DECAYS = ("none", "step", "exponential", "cosine")
BATCH_NORMS = ("off", "before", "after")


def _training_params() -> list[Param]:
    """Optimizer, schedule and regularization: shared by every model family."""
    return [
        Categorical("optimizer", list(OPTIMIZERS), doc="sgd, sgd with momentum, rmsprop or adam"),
        Float("lr", 1e-4, 1.0, log=True, doc="learning rate"),
        Float("momentum", 0.5, 0.99, when={"optimizer": "momentum"}),
        Float("rmsprop_alpha", 0.8, 0.999, when={"optimizer": "rmsprop"}, doc="squared-gradient decay"),
        Float("beta1", 0.8, 0.99, when={"optimizer": "adam"}),
        Float("beta2", 0.9, 0.9999, when={"optimizer": "adam"}),
        Float("eps", 1e-10, 1e-6, log=True, when={"optimizer": ["rmsprop", "adam"]}),
        Int("batch_size", 16, 512, pow2=True),
        Float("weight_decay", 1e-6, 1e-2, log=True, off=0.0, doc="L2 strength (0 = off)"),
        Float("l1", 1e-7, 1e-3, log=True, off=0.0, doc="L1 strength on weights (0 = off)"),
        Categorical("lr_decay", list(LR_DECAYS)),
        Int("step_size", 2, 10, when={"lr_decay": "step"}, doc="epochs between step decays"),
        Float("step_gamma", 0.1, 0.9, when={"lr_decay": "step"}),
        Float("exp_gamma", 0.8, 0.99, when={"lr_decay": "exponential"}, doc="per-epoch decay factor"),
    ]


def _layer_params() -> list[Param]:
    return [
        Categorical("init", list(INITS)),
        Categorical("activation", list(ACTIVATIONS)),
        Categorical("batch_norm", list(BATCH_NORMS), doc="off, before or after the activation"),
        Float("dropout", 0.0, 0.5),
    ]


def mlp() -> Space:
    """Multi-layer perceptron: depth x width hidden layers, constant or tapering (512, 256, 128)."""
    return Space(
        _training_params()
        + [
            Int("depth", 1, 4, doc="hidden layers"),
            Int("width", 32, 512, pow2=True, doc="first hidden layer width"),
            Categorical("shape", ["constant", "taper"], doc="taper halves the width at each layer"),
        ]
        + _layer_params()
    )


def cnn() -> Space:
    """Small CNN: conv blocks (conv, batch norm, activation, 2x2 max-pool), then one dense layer."""
    return Space(
        _training_params()
        + [
            Int("conv_layers", 1, 3),
            Int("channels", 8, 64, pow2=True, doc="channels of the first conv layer (doubled per block)"),
            Categorical("kernel_size", [3, 5]),
            Int("width", 32, 256, pow2=True, doc="dense layer width"),
        ]
        + _layer_params()
    )


PRESETS = {"mlp": mlp, "cnn": cnn}


def preset(name: str) -> Space:
    """A fresh copy of a preset space by name ("mlp" or "cnn").

    Example:
        >>> "lr" in preset("mlp")
        True
    """
    if name not in PRESETS:
        close = difflib.get_close_matches(str(name), list(PRESETS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"Unknown preset {name!r}.{hint} The presets are: {', '.join(PRESETS)}. "
            "For your own model, pass objective=... and space=... to shoal.tune instead."
        )
    return PRESETS[name]()
