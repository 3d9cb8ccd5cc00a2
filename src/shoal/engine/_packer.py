"""The packer: which configs can train together, and how many fit in memory.

``group_key`` splits populations (model family and batch size: a population shares its batch).
Layer shapes, activations, optimizers and the rest do not split: a population buckets its members
by layer shape inside itself (``_pop_layout``), so mixing widths costs no padding.

``member_seconds`` estimates the time one member adds to an epoch (the pools balance their workers
with it). ``member_bytes`` estimates one member's memory: parameters with gradients and two optimizer state
buffers plus the per-element code of the flat optimizer, the activations autograd keeps for one
batch, dropout masks, and its share of an evaluation chunk. ``capacity`` fills a budget (a share
of free RAM, or of free GPU memory) with members. ``PeakMemory`` observes the real peak so a caller
can log the estimate next to it.

Example:
    >>> from shoal.engine._packer import capacity, group_key
    >>> group_key({"batch_size": 32}, "mlp")
    ('mlp', 32)
    >>> capacity([{"width": 64}] * 10, "mlp", (64,), 10, budget_bytes=10**9)
    10
"""

from __future__ import annotations

import resource
import sys
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from shoal.engine._config import normalize

__all__ = ["PeakMemory", "capacity", "default_budget", "group_key", "member_bytes", "member_seconds",
           "population_seconds"]

BUDGET_SHARE = 0.25
_F32 = 4
# per parameter: value, gradient, two optimizer states (4 x float32), int64 element code, the
# member's own copy while the population is (re)stacked, and parameter-sized temporaries of the
# optimizer step (~5 in the eager update; measured peaks were ~2x a 24-byte estimate)
_PER_PARAM = 4 * _F32 + 8 + 6 * _F32
# per hidden unit and batch row: pre-activation, activation, batch-norm output and its saved
# statistics, dropout mask and masked output, and their gradients in backward
_PER_UNIT = 10 * _F32


def group_key(config: Mapping[str, Any], family: str) -> Hashable:
    """What must be equal for two configs to share a population."""
    return (family, int(normalize(config)["batch_size"]))


def _shapes(config: Mapping[str, Any], family: str, input_shape: Sequence[int], n_outputs: int):
    from shoal.engine._pop_layout import member_specs, weight_shape

    cfg = normalize(config)
    specs = member_specs(family, tuple(input_shape), n_outputs, cfg)
    params, units = 0, 0
    h, w = (input_shape[1], input_shape[2]) if family == "cnn" else (1, 1)
    for spec in specs:
        params += int(np.prod(weight_shape(spec))) + spec[2]
        if spec[0] == "conv":
            units += spec[2] * h * w
            h, w = (h // 2, w // 2) if spec[4] else (h, w)
        else:
            units += spec[2]
    if cfg["batch_norm"] != "off":
        params += 2 * sum(s[2] for s in specs[:-1])
    return params, units, int(np.prod(input_shape))


def member_bytes(config: Mapping[str, Any], family: str, input_shape: Sequence[int], n_outputs: int,
                 batch_size: int | None = None, eval_rows: int = 256) -> int:
    """Estimated bytes one member adds to a population (parameters, optimizer state, activations
    of one training batch and of one evaluation chunk, its input rows)."""
    params, units, n_in = _shapes(config, family, input_shape, n_outputs)
    bs = int(batch_size or normalize(config)["batch_size"])
    rows = bs * (units * _PER_UNIT + 2 * n_in * _F32)
    evals = eval_rows * (2 * units + 2 * n_in) * _F32
    return params * _PER_PARAM + rows + evals


# Rough costs on one CPU thread, for balancing workers (only their ratios matter; a pool rescales them
# by what it measures): per step, a population's fixed work (gathering rows, loss, the optimizer call)
# and each member's (its own buckets' small ops); matrix-product FLOP/s; and the memory traffic of
# the optimizer step (~28 bytes per parameter per step: Adam reads and writes its state every step,
# which dominates wide members at small batches). Fitted to one-thread epochs on digits (batch
# 16-256, widths 32-256, 1-16 members).
STEP_POPULATION_S = 3e-4
STEP_MEMBER_S = 1e-4
FLOPS = 4e10
OPTIMIZER_BYTES_PER_S = 1.5e10


def member_seconds(config: Mapping[str, Any], family: str, input_shape: Sequence[int], n_outputs: int,
                   rows: int) -> float:
    """Estimated seconds one member adds to an epoch over ``rows`` training rows (one thread)."""
    from shoal.engine._pop_layout import member_specs
    from shoal.engine._population import _multiply_adds

    cfg = normalize(config)
    params, _, _ = _shapes(cfg, family, input_shape, n_outputs)
    steps = -(-int(rows) // int(cfg["batch_size"]))
    macs = _multiply_adds(member_specs(family, tuple(input_shape), n_outputs, cfg), tuple(input_shape))
    return steps * (STEP_MEMBER_S + params * 28 / OPTIMIZER_BYTES_PER_S) + 6.0 * rows * macs / FLOPS


def population_seconds(config: Mapping[str, Any], rows: int) -> float:
    """Estimated seconds of an epoch that a population costs whatever its members (per-step work)."""
    return -(-int(rows) // int(normalize(config)["batch_size"])) * STEP_POPULATION_S


def default_budget(device: Any = "cpu") -> int:
    """A share (``BUDGET_SHARE``) of the free memory of ``device``: MemAvailable on CPU, free GPU
    memory on CUDA."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free * BUDGET_SHARE)
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        free = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        free = 4 << 30
    return int(free * BUDGET_SHARE)


def capacity(configs: Sequence[Mapping[str, Any]], family: str, input_shape: Sequence[int], n_outputs: int,
             budget_bytes: int | None = None, cap: int | None = None, device: Any = "cpu") -> int:
    """How many of ``configs`` (in order) fit in ``budget_bytes`` together, at most ``cap``."""
    budget = default_budget(device) if budget_bytes is None else int(budget_bytes)
    used, n = 0, 0
    for cfg in configs:
        if cap is not None and n >= cap:
            break
        used += member_bytes(cfg, family, input_shape, n_outputs)
        if used > budget:
            break
        n += 1
    return n


class PeakMemory:
    """Observed peak memory of a block, in bytes, above what the process held when it started.

    On Linux the kernel's peak-RSS mark is reset when the block starts (``/proc/self/clear_refs``),
    so the peak is the block's own even in a process that peaked higher before; elsewhere it is the
    ``ru_maxrss`` rise (0 when the process had already peaked higher). On CUDA,
    ``torch.cuda.max_memory_allocated``.

    Example:
        >>> with PeakMemory("cpu") as peak:
        ...     buf = bytearray(1 << 20)
        >>> peak.bytes >= 0
        True
    """

    def __init__(self, device: Any = "cpu") -> None:
        self.device, self.bytes = str(device), 0

    @staticmethod
    def _rss() -> int:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss if sys.platform == "darwin" else rss * 1024

    @staticmethod
    def _status(field: str) -> int | None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def _reset_peak(self) -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak resident set size (VmHWM) to the current one
        except OSError:
            return False
        return self._status("VmHWM") is not None

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        elif self._reset_peak():
            self._hwm = True
            self._start = self._status("VmRSS") or 0
        else:
            self._hwm = False
            self._start = self._rss()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.startswith("cuda"):
            import torch

            self.bytes = torch.cuda.max_memory_allocated(self.device) - self._start
        elif self._hwm:
            self.bytes = max(0, (self._status("VmHWM") or 0) - self._start)
        else:
            self.bytes = max(0, self._rss() - self._start)
