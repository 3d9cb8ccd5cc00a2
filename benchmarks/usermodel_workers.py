"""A user's module that vmap cannot batch: ``shoal.tune(model=...)`` in this process vs ``workers=N``.

The module (a linear layer behind a Python ``if`` on a tensor's value) makes every member train one
at a time; with ``workers=N`` the members spread over N worker processes that train side by side.
Each study: ``--trials`` trials, all at once, ``--epochs`` epochs on digits, a journal storage in a
temporary folder. Prints the median wall seconds (worker start-up included) and the ratio.

    python benchmarks/usermodel_workers.py --trials 8 --epochs 12 --workers 2 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from torch import nn


class Branchy(nn.Module):
    """Data-dependent control flow: ``vmap`` cannot trace it."""

    def __init__(self, n_inputs: int, n_outputs: int) -> None:
        super().__init__()
        self.lin = nn.Linear(n_inputs, n_outputs)

    def forward(self, x):
        x = x.flatten(1)
        return self.lin(x) if x.sum() > 0 else self.lin(-x)


def study_seconds(workers: int, trials: int, epochs: int, folder: Path, tag: str) -> float:
    import shoal
    from shoal.space import Float, Space

    start = time.perf_counter()
    shoal.tune(model=Branchy, space=Space([Float("lr", 1e-3, 1e-1, log=True)]), data="digits", strategy="random",
               trials=trials, epochs=epochs, population=trials, workers=workers, storage=str(folder / f"{tag}.log"),
               progress=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times: dict[int, list[float]] = {1: [], args.workers: []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):  # interleaved, so that load from other work hits both sides
            for w in times:
                times[w].append(study_seconds(w, args.trials, args.epochs, Path(tmp), f"r{rep}w{w}"))
    one, many = statistics.median(times[1]), statistics.median(times[args.workers])
    print(f"{args.trials} trials x {args.epochs} epochs, one member at a time: this process {one:.1f} s, "
          f"{args.workers} worker processes {many:.1f} s (median of {args.repeats}); speed-up {one / many:.2f}x")


if __name__ == "__main__":  # worker processes start by importing this file: it must not run a study then
    main()
