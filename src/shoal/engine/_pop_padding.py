"""Which MLP members to pad to a common width, so that they train as one bucket.

A population of random configurations from the MLP preset has nearly as many layer-shape
combinations as members (5 widths x 4 depths x 2 shapes): bucketed by exact shape, each bucket
holds one member and every step pays per-bucket dispatch for each (measured: ~1 ms per member per
step at batch 16, the same as training them one at a time). Padding a member's hidden widths up to
its neighbours' turns many small buckets into few large ones, at the price of the padded FLOPs and
optimizer memory traffic. The planner merges members of equal depth greedily while the modelled
cost goes down.

Padded units are inert: their weights, biases and batch-norm parameters start at zero and their
gradients are masked to zero, so a padded member computes what it computes alone (to float
rounding of sums that gain exact zeros).

Cost model, per training step, in seconds (constants measured on the 2-core CPU this project
runs CI on; the order of magnitude is what matters):
    bucket overhead  ~ BUCKET_SECONDS per layer bucket (forward, backward, elementwise runs)
    compute          ~ 6 * batch * sum(fan_in * fan_out) / FLOP_RATE
    optimizer        ~ 28 bytes * parameters / BYTE_RATE   (read P, G, M, V; write P, M, V)
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["plan_padding"]

BUCKET_SECONDS = 2.5e-4
FLOP_RATE = 4e10
BYTE_RATE = 2e10
GPU_BUCKET_SECONDS = 1.5e-4  # kernel launches dominate on a GPU
GPU_FLOP_RATE = 2e13
GPU_BYTE_RATE = 1.5e12


def _member_cost(widths: Sequence[int], n_in: int, n_out: int, batch: int, flop_rate: float,
                 byte_rate: float) -> float:
    dims = [n_in, *widths, n_out]
    params = sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))
    macs = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    return 6.0 * batch * macs / flop_rate + 28.0 * params / byte_rate


def plan_padding(widths: Sequence[tuple[int, ...]], n_in: int, n_out: int, batch: int,
                 gpu: bool = False) -> list[tuple[int, ...]]:
    """Padded hidden widths for each member (same order), never narrower than its own.

    Args:
        widths: each member's hidden widths (its depth is the tuple's length).
        n_in, n_out: input features and outputs.
        batch: rows per step.
        gpu: use the GPU's cost constants.

    Example:
        >>> plan_padding([(32,), (64,), (512, 512)], 64, 10, 16)
        [(64,), (64,), (512, 512)]
    """
    overhead = GPU_BUCKET_SECONDS if gpu else BUCKET_SECONDS
    rates = (GPU_FLOP_RATE, GPU_BYTE_RATE) if gpu else (FLOP_RATE, BYTE_RATE)
    out: list[tuple[int, ...] | None] = [None] * len(widths)
    by_depth: dict[int, list[int]] = {}
    for i, w in enumerate(widths):
        by_depth.setdefault(len(w), []).append(i)
    for depth, idx in by_depth.items():
        # groups: (padded widths, member indices); start from exact shapes, sorted by size
        shapes: dict[tuple, list[int]] = {}
        for i in idx:
            shapes.setdefault(tuple(widths[i]), []).append(i)
        groups = sorted(shapes.items(), key=lambda g: (sum(g[0]), g[0]))

        def cost(shape: tuple, members: list[int]) -> float:
            return (depth + 1) * overhead + len(members) * _member_cost(shape, n_in, n_out, batch, *rates)

        while len(groups) > 1:
            best, best_gain = None, 0.0
            for j in range(len(groups) - 1):
                (sa, ma), (sb, mb) = groups[j], groups[j + 1]
                merged = tuple(max(a, b) for a, b in zip(sa, sb))
                gain = cost(sa, ma) + cost(sb, mb) - cost(merged, ma + mb)
                if gain > best_gain:
                    best, best_gain = j, gain
            if best is None:
                break
            (sa, ma), (sb, mb) = groups[best], groups[best + 1]
            groups[best : best + 2] = [(tuple(max(a, b) for a, b in zip(sa, sb)), ma + mb)]
        for shape, members in groups:
            for i in members:
                out[i] = shape
    return [tuple(w) for w in out]  # type: ignore[arg-type]
