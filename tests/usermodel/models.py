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


class Linear(nn.Module):
    """A linear model whose width argument has a default a study must not override."""

    def __init__(self, n_inputs: int, n_outputs: int, width: int = 12) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n_inputs, width), nn.ReLU(), nn.Linear(width, n_outputs))

    def forward(self, x):
        return self.net(x)


def build_killer(config):
    """Branchy, except that the member with lr above 0.05 kills its own process (SIGKILL) in its first
    training step when it runs in a worker process (never in the test's own process)."""
    return _Killer(64, 10, boom=config["lr"] > 0.05)


class _Killer(Branchy):
    def __init__(self, n_inputs: int, n_outputs: int, boom: bool) -> None:
        super().__init__(n_inputs, n_outputs)
        self.boom = boom

    def forward(self, x):
        import multiprocessing
        import os
        import signal

        if self.boom and self.training and multiprocessing.parent_process() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(x)


class NeedsDepth(nn.Module):
    """An argument (``depth``) that neither the data nor a space without it can give."""

    def __init__(self, n_inputs: int, n_outputs: int, depth: int) -> None:
        super().__init__()
        self.lin = nn.Linear(n_inputs, n_outputs)

    def forward(self, x):
        return self.lin(x.flatten(1))
