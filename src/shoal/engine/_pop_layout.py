"""How a population's members are laid out in memory: sorted, bucketed by layer shape, stacked.

Members are sorted by their layer shapes (then activation and batch-norm mode). At hidden layer
``l`` the members whose first ``l + 1`` layer shapes agree form a *bucket*: a contiguous range of
the sorted members whose weights are one stacked tensor ``[K_b, fan_in, fan_out]`` and whose
layer is one ``baddbmm`` (one grouped convolution for conv layers). Because buckets refine along
the layers, a bucket's input is a slice of one bucket's output at the layer before: no padding,
no gathers. A member only costs its own FLOPs (padding to the widest member was measured to cost
~2.8x). Inside a bucket, *runs* of members with equal activation and batch-norm mode share the
elementwise ops.

Every trainable tensor is a view into one flat buffer, so the optimizer is one elementwise pass
(over blocks of ``BLOCK`` elements; see ``_pop_optim``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from shoal.engine._config import hidden_widths
from shoal.engine._pop_optim import BLOCK, Codes

__all__ = ["Bucket", "Layout", "member_specs"]


def member_specs(family: str, input_shape: tuple, n_out: int, cfg: dict) -> tuple:
    """Layer shapes of one member: ``("lin", fan_in, fan_out)`` or
    ``("conv", c_in, c_out, kernel, pool)``; the last entry is the output layer."""
    if family == "mlp":
        widths = [int(np.prod(input_shape))] + hidden_widths(cfg)
        specs = [("lin", a, b) for a, b in zip(widths[:-1], widths[1:])]
        return tuple(specs) + (("lin", widths[-1], n_out),)
    c, h, w = input_shape
    k, specs = int(cfg["kernel_size"]), []
    for i in range(int(cfg["conv_layers"])):
        out = int(cfg["channels"]) * 2**i
        pool = min(h, w) >= 2
        specs.append(("conv", c, out, k, pool))
        c = out
        if pool:
            h, w = h // 2, w // 2
    width = int(cfg["width"])
    return tuple(specs) + (("lin", c * h * w, width), ("lin", width, n_out))


def _aligned(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def weight_shape(spec: tuple) -> tuple:
    if spec[0] == "conv":
        return (spec[2], spec[1], spec[3], spec[3])  # torch layout [out, in, k, k]
    return (spec[1], spec[2])  # [fan_in, fan_out]: x @ W


@dataclass
class Bucket:
    start: int  # first member (sorted position)
    end: int
    spec: tuple
    parent: int = -1  # index of the bucket at the layer before whose output feeds this one
    offset: int = 0  # this bucket's first member inside the parent
    runs: list = field(default_factory=list)  # (a, b, activation(s), batch_norm), relative
    dropout: bool = False
    bn: bool = False
    head: bool = False
    tensors: dict = field(default_factory=dict)  # W, b, g, be: views of the flat buffer
    stats: dict = field(default_factory=dict)  # rm, rv: batch-norm running statistics
    cache: dict = field(default_factory=dict)  # views the training step reuses (see _pop_backward._views)

    @property
    def n(self) -> int:
        return self.end - self.start


class Layout:
    """The stacked, bucketed arrangement of a list of members (already sorted)."""

    def __init__(self, members: list, device: torch.device) -> None:
        self.members = members
        self.layers: list[list[Bucket]] = []
        self.heads: list[Bucket] = []
        hidden = [len(m.pspecs) - 1 for m in members]
        for l in range(max(hidden)):
            buckets: list[Bucket] = []
            for i, m in enumerate(members):
                if hidden[i] <= l:
                    continue
                prefix = m.pspecs[: l + 1]
                if buckets and buckets[-1].end == i and members[buckets[-1].start].pspecs[: l + 1] == prefix:
                    buckets[-1].end = i + 1
                else:
                    buckets.append(Bucket(i, i + 1, m.pspecs[l]))
            for b in buckets:
                self._link(b, l)
                ms = members[b.start : b.end]
                b.dropout = b.spec[0] == "lin" and any(m.cfg["dropout"] > 0 for m in ms)
                b.bn = any(m.cfg["batch_norm"] != "off" for m in ms)
                # Runs: contiguous members of one activation and batch-norm mode, which share the
                # elementwise ops. (Applying every activation to the whole bucket and selecting
                # with torch.where was measured slower: ~270 where calls per step.)
                for j, m in enumerate(ms):
                    tag = (m.cfg["activation"], m.cfg["batch_norm"])
                    if b.runs and b.runs[-1][1] == j and b.runs[-1][2:] == tag:
                        b.runs[-1] = (b.runs[-1][0], j + 1) + tag
                    else:
                        b.runs.append((j, j + 1) + tag)
            self.layers.append(buckets)
        for i, m in enumerate(members):
            if self.heads and members[self.heads[-1].start].pspecs == m.pspecs:
                self.heads[-1].end = i + 1
            else:
                self.heads.append(Bucket(i, i + 1, m.pspecs[-1], head=True))
        for b in self.heads:
            self._link(b, hidden[b.start])
        self._allocate(device)

    def _link(self, b: Bucket, l: int) -> None:
        if l == 0:
            return
        for j, p in enumerate(self.layers[l - 1]):
            if p.start <= b.start and b.end <= p.end:
                b.parent, b.offset = j, b.start - p.start
                return
        raise RuntimeError("bucket without a parent: members are not sorted by layer shapes")

    def all_buckets(self) -> list[tuple[int, Bucket]]:
        """(layer index, bucket) for every bucket; heads carry the member's hidden depth."""
        out = [(l, b) for l, bs in enumerate(self.layers) for b in bs]
        return out + [(-1, b) for b in self.heads]

    def _allocate(self, device: torch.device) -> None:
        entries = []  # (bucket, name, per-member shape, is_weight)
        for _, b in self.all_buckets():
            out = b.spec[2]
            entries += [(b, "W", weight_shape(b.spec), 1), (b, "b", (out,), 0)]
            if b.bn and not b.head:
                entries += [(b, "g", (out,), 0), (b, "be", (out,), 0)]
        # Each member's tensor starts on a whole block (64 bytes): the optimizer then updates whole
        # blocks of one member, and matrix products see the same alignment in every population
        # (MKL's rounding depends on it: a member's gradient in a population of 2 differed from the
        # same member's in another population at 1e-5 before, enough for PBT copies to drift).
        total = sum(b.n * _aligned(int(np.prod(shape))) for b, _, shape, _ in entries)
        self.P = torch.zeros(total, device=device)
        self.G = torch.zeros(total, device=device)
        self.M = torch.zeros(total, device=device)
        self.V = torch.zeros(total, device=device)
        code = np.full(total, 2 * len(self.members), dtype=np.int64)
        self.slots = []  # (bucket, name, offset, per-member stride, per-member shape)
        o = 0
        for b, name, shape, is_w in entries:
            size = int(np.prod(shape))
            stride = _aligned(size)
            view = self.P.detach()[o : o + b.n * stride].view(b.n, stride)[:, :size].view(b.n, *shape)
            view.requires_grad_()
            view.grad = self.G[o : o + b.n * stride].view(b.n, stride)[:, :size].view(b.n, *shape)
            b.tensors[name] = view
            for r in range(b.n):
                code[o + r * stride : o + r * stride + size] = 2 * (b.start + r) + is_w
            self.slots.append((b, name, o, stride, shape))
            o += b.n * stride
        # Entries that never change (code 2K, the optimizer's frozen row), so they stay at zero: the
        # padding of members narrower than their bucket (see _pop_padding), and biases of layers
        # followed by batch norm "before" the activation (untrained as in the single engine: _Block).
        frozen = []
        for l, b, name, o, stride, shape in self._slots_with_layer():
            for r in range(b.n):
                m = self.members[b.start + r]
                base = o + r * stride
                if name == "b" and not b.head and m.cfg["batch_norm"] == "before":
                    frozen.append(np.arange(base, base + int(np.prod(shape))))
                    continue
                real = self.real_shape(m, l, name)
                if real != tuple(shape):
                    pad = np.ones(shape, dtype=bool)
                    pad[tuple(slice(0, n) for n in real)] = False
                    frozen.append(base + np.flatnonzero(pad))
        if frozen:
            code[np.concatenate(frozen)] = 2 * len(self.members)
        self.codes = Codes(code, 2 * len(self.members), device)
        for _, b in self.all_buckets():
            if b.bn and not b.head:
                b.stats = {"rm": torch.zeros(b.n, b.spec[2], device=device),
                           "rv": torch.ones(b.n, b.spec[2], device=device)}

    def leaves(self) -> list[torch.Tensor]:
        return [b.tensors[name] for b, name, _, _, _ in self.slots]

    @staticmethod
    def real_shape(member: Any, l: int, name: str) -> tuple:
        """The shape of a member's own tensor ``name`` at layer ``l`` (-1: the output layer)."""
        spec = member.specs[l]
        return tuple(weight_shape(spec)) if name == "W" else (spec[2],)

    def _views(self, buf: torch.Tensor, o: int, stride: int, row: int, shape: tuple, real: tuple) -> torch.Tensor:
        """One member's own part of an entry (the top-left corner when it is padded)."""
        view = buf[o + row * stride : o + row * stride + int(np.prod(shape))].view(*shape)
        if tuple(shape) == tuple(real):
            return view
        return view[tuple(slice(0, n) for n in real)]

    def _member_views(self):
        """(member row, state key, view of that member's own part) for every stacked tensor:
        parameters with their optimizer state (keys ``name``, ``"M" + name``, ``"V" + name``) and
        batch-norm running statistics."""
        for l, b, name, o, stride, shape in self._slots_with_layer():
            for r in range(b.n):
                real = self.real_shape(self.members[b.start + r], l, name)
                for buf, prefix in ((self.P, ""), (self.M, "M"), (self.V, "V")):
                    yield b.start + r, (prefix + name, l), self._views(buf, o, stride, r, shape, real)
        for l, b in self.all_buckets():
            for name, buf in b.stats.items():
                for r in range(b.n):
                    yield b.start + r, (name, l), buf[r, : self.members[b.start + r].specs[l][2]]

    def load(self, states: list[dict[str, Any]]) -> None:
        """Copy each member's own tensors (keyed by (name, layer)) into the stacked buffers."""
        with torch.no_grad():
            for k, key, view in self._member_views():
                t = states[k].get(key)
                if t is not None:
                    view.copy_(t.reshape(view.shape))

    def save(self) -> list[dict[str, Any]]:
        """Each member's own tensors, cloned: the inverse of ``load``."""
        states: list[dict[str, Any]] = [{} for _ in self.members]
        with torch.no_grad():
            for k, key, view in self._member_views():
                states[k][key] = view.clone()
        return states

    def _slots_with_layer(self):
        layer_of = {id(b): l for l, b in self.all_buckets()}
        for b, name, o, stride, shape in self.slots:
            yield layer_of[id(b)], b, name, o, stride, shape
