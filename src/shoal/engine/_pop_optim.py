"""One batched optimizer step for a whole population: SGD, momentum, RMSprop and Adam at once.

Every parameter of every member lives in one flat buffer ``P`` (gradients in ``G``, state in ``M``
and ``V``). Each element carries a small integer code, ``2 * member + is_weight``, that picks its
row of a coefficient table (code ``2K`` is a frozen row for entries that never change), so the four
optimizer families become one elementwise update::

    g  = G + l1 * sign(P) + wd * P              (l1, wd are 0 for biases and batch-norm parameters)
    M  = a1 * M + a2 * g + a3 * (g - M)         (Adam: a1=1, a2=0, a3=1-beta1, as torch's lerp_)
    V  = b1 * V + b2 * (g * g)                  (RMSprop and Adam; 0 for SGD and momentum)
    P  = P - lr * M / (sqrt(V) / c + eps)       (SGD / momentum: c=inf, eps=1 -> P - lr * M)

The coefficients mirror ``torch.optim``'s single-tensor code (same Python-double arithmetic, same
float32 constants), so a member matches its own torch optimizer to float rounding. A member with
no rows in a step is frozen with ``a1=b1=1, a2=a3=b2=lr=0``. The update is memory-bound (about
eight passes over the parameters); on CPU a small C kernel (``_pop_native``) makes it one pass,
elsewhere ``torch.compile`` does.

The buffers are updated in blocks of ``BLOCK`` elements: a block whose elements share one code
takes its coefficients once (a ``[blocks, 1]`` column), so the compiled loop is vectorized; the few
blocks that straddle two members' tensors (or hold frozen entries) are updated element by element.
Looking up ten coefficients per element kept the loop scalar: 7.6 ms against 1.7 ms per step for
the 2.6 million parameters of 22 preset members at batch 16 (one thread).
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any, Mapping, Sequence

import numpy as np
import torch

__all__ = ["BLOCK", "COLUMNS", "Coefficients", "Codes", "flat_update"]

BLOCK = 16  # elements per block: one AVX-512 vector of float32
COLUMNS = ("lr", "a1", "a2", "a3", "b1", "b2", "c", "eps", "wd", "l1")
_FROZEN = dict(lr=0.0, a1=1.0, a2=0.0, a3=0.0, b1=1.0, b2=0.0, c=math.inf, eps=1.0)


class Coefficients:
    """Per-member constants of a population's optimizers, in its member order; ``table`` fills the
    ``[2K, len(COLUMNS)]`` float32 table of one step (row ``2k``: biases and batch norm of member k,
    row ``2k + 1``: its weights) with numpy, in float64 like torch's Python-side arithmetic."""

    def __init__(self, cfgs: Sequence[Mapping[str, Any]]) -> None:
        k = len(cfgs)
        self.base = np.zeros((k, len(COLUMNS)), dtype=np.float64)
        self.adam = np.zeros(k, dtype=bool)
        self.beta1, self.beta2 = np.zeros(k), np.zeros(k)
        for i, cfg in enumerate(cfgs):
            opt = cfg["optimizer"]
            if opt in ("sgd", "momentum"):
                mom = float(cfg["momentum"]) if opt == "momentum" else 0.0
                row = (0.0, mom, 1.0, 0.0, 0.0, 0.0, math.inf, 1.0)
            elif opt == "rmsprop":
                alpha = float(cfg["rmsprop_alpha"])
                row = (0.0, 0.0, 1.0, 0.0, alpha, 1.0 - alpha, 1.0, float(cfg["eps"]))
            else:
                b1, b2 = float(cfg["beta1"]), float(cfg["beta2"])
                self.adam[i], self.beta1[i], self.beta2[i] = True, b1, b2
                row = (0.0, 1.0, 0.0, 1.0 - b1, b2, 1.0 - b2, 1.0, float(cfg["eps"]))
            self.base[i, :8] = row
            self.base[i, 8], self.base[i, 9] = float(cfg["weight_decay"]), float(cfg["l1"])
        self.frozen = np.array([_FROZEN[c] for c in COLUMNS[:8]] + [0.0, 0.0])

    def table(self, lrs: np.ndarray, steps: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
        """``lrs``: each member's learning rate this epoch; ``steps``: its step count including this
        step; ``active``: False freezes a member (no rows in this step)."""
        t = self.base.copy()
        steps = np.maximum(steps, 1).astype(np.float64)
        # exactly torch's _single_tensor_adam: step_size = lr / bc1, denom = sqrt(v) / sqrt(bc2) + eps
        bc1 = np.where(self.adam, 1.0 - self.beta1**steps, 1.0)
        t[:, 0] = np.where(self.adam, lrs / bc1, lrs)
        t[:, 6] = np.where(self.adam, np.sqrt(1.0 - self.beta2**steps), t[:, 6])
        if active is not None and not active.all():
            t[~active] = self.frozen
        out = np.repeat(t, 2, axis=0)
        out[0::2, 8:] = 0.0  # no weight decay or L1 on biases and batch-norm parameters
        # last row (code 2K): entries that never change (padding, biases before batch norm)
        out = np.vstack([out, self.frozen[None, :]])
        return out.astype(np.float32)


class Codes:
    """Which coefficient row each element of the flat buffers takes, by block.

    Args:
        code: ``2 * member + is_weight`` per element (``frozen`` for entries that never change),
            of length a multiple of ``BLOCK``.
        frozen: the frozen row's index (``2K``).
        device: where the buffers live.
    """

    def __init__(self, code: np.ndarray, frozen: int, device: torch.device) -> None:
        blocks = np.asarray(code, dtype=np.int64).reshape(-1, BLOCK)  # int64: the C kernel reads them so
        uniform = (blocks == blocks[:, :1]).all(1)
        self.block = torch.from_numpy(np.where(uniform, blocks[:, 0], frozen)).to(device)
        mixed = np.flatnonzero(np.repeat(~uniform, BLOCK))
        self.mixed = torch.from_numpy(mixed).to(device) if mixed.size else None
        self.mixed_code = torch.from_numpy(blocks.reshape(-1)[mixed]).to(device) if mixed.size else None


def _update(P: torch.Tensor, G: torch.Tensor, M: torch.Tensor, V: torch.Tensor, code: torch.Tensor,
            table: torch.Tensor) -> None:
    """The update of elements whose rows are ``table[code]``: ``code`` has P's shape (one row per
    element), or ``[blocks, 1]`` for buffers viewed as ``[blocks, BLOCK]`` (one row per block)."""
    col = {name: table[:, j][code] for j, name in enumerate(COLUMNS)}  # fused away when compiled
    g = G + col["l1"] * torch.sign(P) + col["wd"] * P
    m = col["a1"] * M + col["a2"] * g + col["a3"] * (g - M)
    v = col["b1"] * V + col["b2"] * (g * g)
    P.copy_(P - col["lr"] * (m / (torch.sqrt(v) / col["c"] + col["eps"])))
    M.copy_(m)
    V.copy_(v)


def _step(P: torch.Tensor, G: torch.Tensor, M: torch.Tensor, V: torch.Tensor, codes: Codes,
          table: torch.Tensor, update) -> None:
    view = [t.view(-1, BLOCK) for t in (P, G, M, V)]
    update(*view, codes.block.unsqueeze(1), table)  # mixed blocks take the frozen row here
    if codes.mixed is not None:
        i = codes.mixed
        p, m, v = P[i], M[i], V[i]
        update(p, G[i], m, v, codes.mixed_code, table)
        P[i], M[i], V[i] = p, m, v


_compiled = None  # the torch update (compiled or eager); None until ``_choose`` ran in this process
_native = None  # the C kernel (``_pop_native``) when it loads; tried once per process
backend = ""  # which update the process uses: "native", "compiled" or "eager" (set by the first step)
compile_seconds = 0.0  # spent building or compiling the update in this process (a one-off, not any member's training)


def _choose(P: torch.Tensor, G: torch.Tensor, M: torch.Tensor, V: torch.Tensor, codes: Codes,
            table: torch.Tensor) -> None:
    """Pick the update once per process: the C kernel on CPU (built once per machine, loaded in
    milliseconds), else ``torch.compile`` (GPUs, or no C compiler), else eager PyTorch.
    ``SHOAL_UPDATE=native|compiled|eager`` forces one (for benchmarks and tests);
    ``SHOAL_NO_COMPILE=1`` means eager."""
    global _compiled, _native, backend, compile_seconds
    started = time.perf_counter()
    want = os.environ.get("SHOAL_UPDATE", "")
    if os.environ.get("SHOAL_NO_COMPILE", "") == "1":
        want = "eager"
    _compiled, backend = _update, "eager"
    if want in ("", "native") and P.device.type == "cpu":
        from shoal.engine import _pop_native

        if _pop_native.load() is not None:
            _native, backend = _pop_native, "native"
        else:  # slower from here on (torch.compile costs seconds per process; eager ~40x per step)
            logging.getLogger("shoal").warning("population optimizer step: no C kernel (%s); falling back to "
                                               "torch.compile or eager PyTorch", _pop_native.last_error)
    if backend == "eager" and want in ("", "compiled"):
        try:
            fn = torch.compile(_update, dynamic=True)
            with torch.no_grad():  # as the real calls run: a grad-mode change would compile again
                _step(P.clone(), G, M.clone(), V.clone(), codes, table, fn)  # probe on copies
            _compiled, backend = fn, "compiled"
        except Exception:  # no C++ compiler, unsupported backend: eager is correct, only slower
            _compiled = _update
    compile_seconds += time.perf_counter() - started


def flat_update(P: torch.Tensor, G: torch.Tensor, M: torch.Tensor, V: torch.Tensor, codes: Codes,
                table: torch.Tensor) -> None:
    """Apply one step in place (buffers of a length that is a multiple of ``BLOCK``), with the
    update ``_choose`` picked for this process. (Under ``torch.compile`` the element-wise form of
    mixed blocks compiles when a layout first has some: only padded members have them, as every
    member's tensors start on a block.)"""
    if _compiled is None:
        _choose(P, G, M, V, codes, table)
    if _native is not None and P.device.type == "cpu":
        _native.update(P, G, M, V, BLOCK, codes.block, table.contiguous(), codes.mixed, codes.mixed_code)
        return
    with torch.no_grad():
        _step(P, G, M, V, codes, table, _compiled)
