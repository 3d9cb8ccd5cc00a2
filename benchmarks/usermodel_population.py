"""K members of a user's module trained as one vmapped population vs K plain torch.optim runs.

Both train the same module (an MLP on digits: 64 -> hidden -> 10, Adam, batch size 64) for the same
epochs with the same batches; the population's members compute what the plain runs compute
(tests/usermodel). Prints the median seconds of each over ``--repeats`` and the speed-up.

    python benchmarks/usermodel_population.py --members 4 16 --hidden 64 512
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, n_inputs: int, n_outputs: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, n_outputs))

    def forward(self, x):
        return self.net(x)


def plain(cfg, seed, data, epochs, hidden):
    from shoal.engine._config import batch_bounds, epoch_order, normalize
    from shoal.engine._single import data_loss, evaluate, make_optimizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Net(64, 10, hidden)
    opt = make_optimizer(model, normalize(cfg))
    for e in range(epochs):
        order = torch.from_numpy(epoch_order(seed, e, data.n_train))
        model.train()
        for lo, hi in batch_bounds(data.n_train, 64):
            idx = order[lo:hi]
            opt.zero_grad()
            data_loss(model(data.X_train[idx]), data.y_train[idx], data.task).backward()
            opt.step()
        evaluate(model, data.X_val, data.y_val, data.task)


def population(cfgs, data, epochs, hidden, vmap=True):
    from shoal.engine._functional import FunctionalPopulation

    pop = FunctionalPopulation(lambda c: Net(64, 10, hidden), data, 64, vmap=vmap)
    for i, cfg in enumerate(cfgs):
        pop.add(i, cfg, seed=i, epochs=epochs)
    for _ in range(epochs):
        pop.run_epoch()


def main() -> None:
    from shoal.data import load_dataset, prepare, train_val_split
    from shoal.engine import TensorData

    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 512])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    ds = load_dataset("digits")
    data = TensorData.from_prepared(prepare(ds, train_val_split(ds, seed=0)))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; digits, {args.epochs} epochs, "
          f"median of {args.repeats}")
    print(f"{'K':>4} {'hidden':>6} {'sequential s':>13} {'vmapped s':>10} {'speed-up':>9}")
    for hidden in args.hidden:
        for k in args.members:
            cfgs = [{"optimizer": "adam", "lr": 1e-3 * (1 + i % 5)} for i in range(k)]
            seq, vm = [], []
            population(cfgs[:2], data, 1, hidden)  # warm up torch.func once
            for _ in range(args.repeats):
                t = time.perf_counter()
                for i, cfg in enumerate(cfgs):
                    plain(cfg, i, data, args.epochs, hidden)
                seq.append(time.perf_counter() - t)
                t = time.perf_counter()
                population(cfgs, data, args.epochs, hidden)
                vm.append(time.perf_counter() - t)
            s, v = statistics.median(seq), statistics.median(vm)
            print(f"{k:>4} {hidden:>6} {s:>13.2f} {v:>10.2f} {s / v:>8.2f}x")


if __name__ == "__main__":
    main()
