"""Tune your own PyTorch model with shoal, two ways.

1. ``model=``: hand shoal your nn.Module class; shoal trains every trial (its data split, batches,
   optimizer, validation), many trials at once as one batched computation (torch.func.vmap).
2. ``objective=``: keep your own training loop. A fidelity objective ``fn(config, epochs, state)``
   trains a few more epochs from ``state`` and returns ``(value, state)``: shoal calls it one epoch
   at a time, so pruners stop bad trials early and PBT copies the best members' states.

    python examples/your_model.py --trials 12 --epochs 5
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import shoal
from shoal.space import Categorical, Float, Space


class Net(nn.Module):
    """Any module works; constructor arguments named in the space are searched, and ``n_inputs`` /
    ``n_outputs`` come from the data."""

    def __init__(self, n_inputs: int, n_outputs: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def with_model(trials: int, epochs: int, storage: str) -> shoal.TuneResult:
    space = Space([
        Float("lr", 1e-4, 1e-1, log=True),
        Float("weight_decay", 1e-6, 1e-2, log=True),
        Categorical("optimizer", ["momentum", "adam"]),
    ])
    return shoal.tune(model=Net, space=space, data="digits", strategy="tpe", trials=trials, epochs=epochs,
                      metric="val_acc", pruner="median", storage=storage, study="your-model")


def digits_tensors():
    from shoal.data import load_dataset, prepare, train_val_split

    ds = load_dataset("digits")
    p = prepare(ds, train_val_split(ds, seed=0))
    f = lambda a: torch.as_tensor(a.reshape(len(a), -1), dtype=torch.float32)  # noqa: E731
    return f(p.X_train), torch.as_tensor(p.y_train), f(p.X_val), torch.as_tensor(p.y_val)


DATA = None


def objective(config: dict, epochs: int, state: dict | None = None):
    """Your own training loop, resumable: ``state`` is what the last call returned (None: start)."""
    global DATA
    DATA = DATA or digits_tensors()
    X, y, Xv, yv = DATA
    model = Net(X.shape[1], 10, hidden=64)
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        for group in opt.param_groups:  # PBT may have changed the learning rate of this copy
            group["lr"] = config["lr"]
    for _ in range(epochs):
        for idx in torch.randperm(len(X)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        val_loss = float(nn.functional.cross_entropy(model(Xv), yv))
    return val_loss, {"model": model.state_dict(), "optimizer": opt.state_dict()}


def with_objective(trials: int, epochs: int, storage: str, strategy: str = "pbt") -> shoal.TuneResult:
    space = Space([Float("lr", 1e-3, 0.3, log=True)])
    return shoal.tune(objective, space=space, strategy=strategy, trials=trials, epochs=epochs,
                      storage=storage, study=f"your-loop-{strategy}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--storage", default="your_model.db")
    args = ap.parse_args()
    r = with_model(args.trials, args.epochs, args.storage)
    print("model=:", r.best_value, r.best_params)
    r = with_objective(max(4, args.trials // 2), args.epochs, args.storage)
    print("objective= (PBT):", r.best_value, r.best_params)
