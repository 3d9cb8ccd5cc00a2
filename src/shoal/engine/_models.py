"""The built-in model families as plain PyTorch modules (the reference the population engine matches).

MLP: ``[linear -> (bn) -> activation -> (bn) -> dropout] x depth -> linear``.
CNN: ``[conv -> (bn) -> activation -> (bn) -> 2x2 max-pool] x conv_layers -> flatten ->
linear -> (bn) -> activation -> (bn) -> dropout -> linear``.

A layer followed by batch norm "before" the activation keeps its bias at zero, untrained.

Initialization (weights; biases start at zero, batch-norm scales at one):
``normal`` N(0, 0.01^2), the classic "small random numbers"; ``uniform`` U(-1/sqrt(fan_in),
1/sqrt(fan_in)); ``xavier`` Glorot uniform; ``he`` Kaiming normal (fan_in, gain sqrt(2)).
Weights are drawn in module order from one ``torch.Generator`` seeded with the trial's seed.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shoal._errors import ConfigError
from shoal.engine._config import hidden_widths

__all__ = ["CNN", "MLP", "activation_fn", "build_model", "init_weight"]


def activation_fn(name: str):
    """The activation as a function of a tensor."""
    table = {
        "relu": torch.relu,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "leaky_relu": lambda x: F.leaky_relu(x, 0.01),
        "elu": F.elu,
        "gelu": F.gelu,
        "silu": F.silu,
    }
    return table[name]


def init_weight(shape: Sequence[int], scheme: str, generator: torch.Generator) -> torch.Tensor:
    """A weight tensor in PyTorch layout (``[out, in, *kernel]``) drawn with ``scheme``."""
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    fan_out, fan_in = shape[0] * receptive, int(np.prod(shape[1:]))
    if scheme == "normal":
        return torch.randn(*shape, generator=generator) * 0.01
    if scheme == "uniform":
        bound = 1.0 / math.sqrt(fan_in)
    elif scheme == "xavier":
        bound = math.sqrt(6.0 / (fan_in + fan_out))
    elif scheme == "he":
        return torch.randn(*shape, generator=generator) * math.sqrt(2.0 / fan_in)
    else:
        raise ConfigError(f"The 'init' parameter must be one of normal, uniform, xavier, he. Got {scheme!r}.")
    return (torch.rand(*shape, generator=generator) * 2.0 - 1.0) * bound


class _Dropout(nn.Module):
    """Inverted dropout whose masks come from a NumPy stream set by the trainer each epoch."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)
        self.rng: np.random.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = self.rng.random(tuple(x.shape), dtype=np.float32) >= self.p
        mask = torch.from_numpy(keep).to(device=x.device, dtype=x.dtype)
        return x * mask * (1.0 / (1.0 - self.p))


class _Block(nn.Module):
    """layer -> (bn before) -> activation -> (bn after) -> dropout."""

    def __init__(self, layer: nn.Module, features: int, config: Mapping[str, Any], conv: bool) -> None:
        super().__init__()
        self.layer = layer
        self.bn_mode = config["batch_norm"]
        self.bn = (nn.BatchNorm2d if conv else nn.BatchNorm1d)(features) if self.bn_mode != "off" else None
        if self.bn_mode == "before":
            # Batch norm right after the layer cancels its bias: its true gradient is 0, and Adam or
            # RMSprop would turn the rounding noise of that 0 into full learning-rate steps. The bias
            # stays at zero, untrained (the standard practice of bias=False, in a form the
            # population engine's stacked buffers share).
            layer.bias.requires_grad_(False)
        self.act = activation_fn(config["activation"])
        self.pool = conv
        self.dropout = None if conv else _Dropout(config["dropout"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer(x)
        if self.bn_mode == "before":
            x = self.bn(x)
        x = self.act(x)
        if self.bn_mode == "after":
            x = self.bn(x)
        if self.pool and min(x.shape[-2:]) >= 2:
            x = F.max_pool2d(x, 2)
        if self.dropout is not None:
            x = self.dropout(x)
        return x


class MLP(nn.Module):
    def __init__(self, n_in: int, n_out: int, config: Mapping[str, Any]) -> None:
        super().__init__()
        widths = [n_in] + hidden_widths(config)
        self.blocks = nn.ModuleList(
            _Block(nn.Linear(a, b), b, config, conv=False) for a, b in zip(widths[:-1], widths[1:])
        )
        self.head = nn.Linear(widths[-1], n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class CNN(nn.Module):
    def __init__(self, input_shape: Sequence[int], n_out: int, config: Mapping[str, Any]) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ConfigError(
                f"The cnn preset needs image data shaped (channels, height, width). Got input shape "
                f"{tuple(input_shape)}. Use the mlp preset for tabular data."
            )
        c, h, w = input_shape
        k = int(config["kernel_size"])
        blocks = []
        for i in range(int(config["conv_layers"])):
            out = int(config["channels"]) * 2**i
            blocks.append(_Block(nn.Conv2d(c, out, k, padding=k // 2), out, config, conv=True))
            c = out
            if min(h, w) >= 2:
                h, w = h // 2, w // 2
        self.blocks = nn.ModuleList(blocks)
        width = int(config["width"])
        self.dense = _Block(nn.Linear(c * h * w, width), width, config, conv=False)
        self.head = nn.Linear(width, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(self.dense(x.flatten(1)))


def build_model(
    family: str, input_shape: Sequence[int], n_out: int, config: Mapping[str, Any], seed: int
) -> nn.Module:
    """Build and initialize a model of ``family`` ("mlp" or "cnn") from a normalized config."""
    if family == "mlp":
        model: nn.Module = MLP(int(np.prod(input_shape)), n_out, config)
    elif family == "cnn":
        model = CNN(input_shape, n_out, config)
    else:
        raise ConfigError(f"Unknown model family {family!r}. The families are: mlp, cnn.")
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.weight.copy_(init_weight(module.weight.shape, config["init"], gen))
                module.bias.zero_()
    return model


def set_dropout_rng(model: nn.Module, rng: np.random.Generator) -> None:
    for module in model.modules():
        if isinstance(module, _Dropout):
            module.rng = rng
