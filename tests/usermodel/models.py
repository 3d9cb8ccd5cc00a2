"""Small user modules for the tests (importable: worker processes and pickles need them)."""

from __future__ import annotations

from torch import nn


class Net(nn.Module):
    """An MLP a user would write: flatten, hidden layer, ReLU, optional batch norm, logits."""

    def __init__(self, n_inputs: int, n_outputs: int, hidden: int = 16, bn: bool = False) -> None:
        super().__init__()
        layers = [nn.Flatten(), nn.Linear(n_inputs, hidden, bias=not bn)]
        if bn:  # no bias before batch norm: it cancels, and Adam would turn its rounding noise into steps
            layers.append(nn.BatchNorm1d(hidden))
        layers += [nn.ReLU(), nn.Linear(hidden, n_outputs)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class Branchy(nn.Module):
    """Data-dependent control flow: ``vmap`` cannot trace it."""

    def __init__(self, n_inputs: int, n_outputs: int) -> None:
        super().__init__()
        self.lin = nn.Linear(n_inputs, n_outputs)

    def forward(self, x):
        x = x.flatten(1)
        if x.sum() > 0:
            return self.lin(x)
        return self.lin(-x)
