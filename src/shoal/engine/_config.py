"""One trial's training recipe: defaults, validation, and the rules both engines share.

Everything that decides *what* a run computes lives here, so that the single-model engine and the
population engine compute the same thing: the learning-rate schedule, the layer widths, the data
order of each epoch and the dropout random stream.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

import numpy as np

from shoal._errors import ConfigError

__all__ = [
    "DEFAULTS",
    "batch_bounds",
    "diverged",
    "FAMILIES",
    "METRICS",
    "dropout_rng",
    "epoch_order",
    "hidden_widths",
    "lr_at",
    "normalize",
]

FAMILIES = ("mlp", "cnn")

DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "momentum": 0.9,
    "rmsprop_alpha": 0.99,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
    "batch_size": 64,
    "weight_decay": 0.0,
    "l1": 0.0,
    "lr_decay": "none",
    "step_size": 5,
    "step_gamma": 0.5,
    "exp_gamma": 0.95,
    "depth": 2,
    "width": 128,
    "shape": "constant",
    "init": "he",
    "activation": "relu",
    "batch_norm": "off",
    "dropout": 0.0,
    "conv_layers": 2,
    "channels": 16,
    "kernel_size": 3,
}

_CHOICES = {
    "optimizer": ("sgd", "momentum", "rmsprop", "adam"),
    "lr_decay": ("none", "step", "exponential", "cosine"),
    "shape": ("constant", "taper"),
    "init": ("normal", "uniform", "xavier", "he"),
    "activation": ("relu", "tanh", "sigmoid", "leaky_relu", "elu", "gelu", "silu"),
    "batch_norm": ("off", "before", "after"),
}
# name -> (low, high, low inclusive, high inclusive)
_RANGES = {
    "lr": (0.0, math.inf, False, False),
    "momentum": (0.0, 1.0, True, False),
    "rmsprop_alpha": (0.0, 1.0, True, False),
    "beta1": (0.0, 1.0, True, False),
    "beta2": (0.0, 1.0, True, False),
    "eps": (0.0, math.inf, False, False),
    "weight_decay": (0.0, math.inf, True, False),
    "l1": (0.0, math.inf, True, False),
    "step_gamma": (0.0, 1.0, False, True),
    "exp_gamma": (0.0, 1.0, False, True),
    "dropout": (0.0, 1.0, True, False),
}
_POSITIVE_INTS = ("batch_size", "step_size", "depth", "width", "conv_layers", "channels", "kernel_size")

METRICS = {"val_loss": "minimize", "val_acc": "maximize", "train_loss": "minimize"}


def normalize(config: Mapping[str, Any]) -> dict[str, Any]:
    """Fill defaults and validate a built-in model's config; unknown keys pass through untouched."""
    out = dict(DEFAULTS)
    for key, value in config.items():  # NumPy scalars (from arrays of configs) become plain Python
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            value = int(value)
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            value = float(value)
        elif isinstance(value, np.bool_):
            value = bool(value)
        out[key] = value
    for key, allowed in _CHOICES.items():
        if out[key] not in allowed:
            raise ConfigError(
                f"The '{key}' parameter must be one of {list(allowed)}. Got {out[key]!r} instead."
            )
    for key, (lo, hi, lo_in, hi_in) in _RANGES.items():
        v = out[key]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)
        ok = ok and (v >= lo if lo_in else v > lo) and (v <= hi if hi_in else v < hi)
        if not ok:
            left, right = "[" if lo_in else "(", "]" if hi_in else ")"
            raise ConfigError(
                f"The '{key}' parameter must be a number in the range {left}{lo:g}, {hi:g}{right}. "
                f"Got {v!r} instead."
            )
    for key in _POSITIVE_INTS:
        v = out[key]
        if isinstance(v, float) and v.is_integer():
            out[key] = v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"The '{key}' parameter must be a positive integer. Got {v!r} instead.")
    if out["kernel_size"] % 2 == 0:
        raise ConfigError(
            f"The 'kernel_size' parameter must be odd (3, 5, 7) so that convolutions keep the map size. "
            f"Got {out['kernel_size']!r} instead."
        )
    return out


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """The (start, end) of each batch of an epoch over ``n`` shuffled rows.

    A last batch of a single row joins the batch before it: batch norm cannot normalize one row.
    """
    bounds = [(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def hidden_widths(config: Mapping[str, Any]) -> list[int]:
    """MLP hidden widths: constant, or halved at each layer ("taper": 512, 256, 128), never below 8."""
    width, depth = int(config["width"]), int(config["depth"])
    if config["shape"] == "taper":
        return [max(width >> i, 8) for i in range(depth)]
    return [width] * depth


def lr_at(config: Mapping[str, Any], epoch: int, epochs: int) -> float:
    """Learning rate during ``epoch`` (0-based) of ``epochs``, in closed form."""
    lr, decay = float(config["lr"]), config["lr_decay"]
    if decay == "step":
        return lr * float(config["step_gamma"]) ** (epoch // int(config["step_size"]))
    if decay == "exponential":
        return lr * float(config["exp_gamma"]) ** epoch
    if decay == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))
    return lr


EXPLODED = 1e4  # a loss this large has diverged (losses are on standardized targets or cross entropy)


def diverged(train_loss: float, val_loss: float) -> bool:
    """Whether an epoch's losses show divergence: NaN, infinite, or exploded past ``EXPLODED``.

    Cross entropy of a uniform guess is log(classes) (2.3 for 10) and targets of regression are
    standardized, so a loss of 1e4 means the weights have blown up, even where ReLU units died
    before the loss could become NaN.
    """
    return not all(math.isfinite(v) and v < EXPLODED for v in (train_loss, val_loss))


def divergence_reason(epoch: int, train_loss: float, val_loss: float, lr: float) -> str:
    """What a diverged trial records as its failure (``epoch`` 1-based)."""
    return (f"training diverged at epoch {epoch}: train loss {train_loss:.4g}, validation loss {val_loss:.4g} "
            f"(learning rate {lr:.3g}); try a smaller learning rate")


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The shuffled order of the ``n`` training rows in ``epoch``: a function of (seed, epoch) only,
    so a run resumed at any epoch, or trained in a population, sees the same batches."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def dropout_rng(seed: int, epoch: int) -> np.random.Generator:
    """The stream that draws the dropout masks of one epoch (NumPy: much faster than torch's CPU
    ``bernoulli_``). Seeded by (seed, epoch), so a resumed run draws the same masks."""
    return np.random.default_rng([int(seed), int(epoch), 0x5D0])
