"""A population's dropout masks for one epoch, drawn a chunk of steps at a time.

Member k draws what the single engine's ``_Dropout`` draws: one NumPy stream per epoch
(``dropout_rng``), and per step, per dropout layer in forward order, ``rows x width`` uniform
float32 numbers (a mask keeps a unit where the number is at least p). A stream's float32 draws
are one sequence whatever the sizes of the calls that take them, so a member takes a whole chunk
of steps in one call and the pieces are cut out of it: one NumPy call per member per chunk
instead of one per member, layer and step (which cost ~1.5 ms of a ~20 ms step for 22 preset
members at batch 16).

Rows a member does not have in a step (padding) and units it does not have (padded widths) get
the number 1.0: kept, scaled like its real units; their loss weight or outgoing weights are zero.
"""

from __future__ import annotations

import numpy as np
import torch

from shoal.engine._pop_layout import Layout

__all__ = ["DropoutMasks"]

CHUNK_BYTES = 1 << 24  # masks held at once: 16 MiB


class DropoutMasks:
    """Masks of every dropout bucket of ``layout`` for the steps of one epoch.

    Args:
        layout: the stacked members.
        rngs: each member's dropout stream for this epoch (sorted member order).
        counts: ``[K, steps]`` rows of each member in each step.
        batch_size: rows of a full step.
        device: where the masks go.
    """

    def __init__(self, layout: Layout, rngs: list, counts: np.ndarray, batch_size: int,
                 device: torch.device) -> None:
        self.layout, self.rngs, self.counts, self.B, self.device = layout, rngs, counts, batch_size, device
        members = layout.members
        self.p = np.array([float(m.cfg["dropout"]) for m in members])
        # Per member: its dropout layers in forward order as (layer, own width, offset in its draws).
        self.plan: list[list[tuple[int, int, int]]] = []
        for k, m in enumerate(members):
            layers, off = [], 0
            if self.p[k] > 0:
                for l, spec in enumerate(m.specs[:-1]):
                    if spec[0] == "lin":
                        layers.append((l, spec[2], off))
                        off += spec[2]
            self.plan.append(layers)
        self.buckets = [(l, j, b) for l, bs in enumerate(layout.layers) for j, b in enumerate(bs) if b.dropout]
        per_step = batch_size * sum(b.n * b.spec[2] for _, _, b in self.buckets)
        self.chunk = min(max(1, CHUNK_BYTES // max(4 * per_step, 1)), counts.shape[1])
        self.start = -self.chunk - 1  # no chunk drawn yet
        # Buffers reused by every chunk (fresh arrays cost page faults: ~10 ns per number), and
        # each member's keep threshold and scale.
        self.raw, self.masks, self.keep, self.scale = {}, {}, {}, {}
        rows = max(batch_size, int(counts.max(initial=0)))  # a last batch may hold B + 1 rows
        for l, j, b in self.buckets:
            shape = (b.n, self.chunk, rows, b.spec[2])
            self.raw[(l, j)] = np.empty(shape, dtype=np.float32)  # member-major: one region each
            self.masks[(l, j)] = torch.empty(shape, device=device)
            p = self.p[b.start : b.end].astype(np.float32)[:, None, None, None]
            self.keep[(l, j)] = torch.from_numpy(p).to(device)
            self.scale[(l, j)] = torch.from_numpy((1.0 / (1.0 - p)).astype(np.float32)).to(device)

    def step(self, i: int, rows: int) -> dict | None:
        """Masks ``{(layer, bucket): [members, rows, width]}`` of step ``i`` (``rows``: the most rows
        a member has in it), or None when no member uses dropout. They are views of buffers that
        the next chunk overwrites: use them within the step."""
        if not self.buckets:
            return None
        if not self.start <= i < self.start + self.chunk:
            self._draw(i)
        t = i - self.start
        return {key: m[:, t, :rows] for key, m in self.masks.items()}

    def _draw(self, i0: int) -> None:
        i1 = min(i0 + self.chunk, self.counts.shape[1])
        T, B = i1 - i0, self.B
        arrays = self.raw
        for a in arrays.values():
            a.fill(1.0)
        where = {}  # (member, layer) -> (array, row in the bucket)
        for l, j, b in self.buckets:
            for r in range(b.n):
                where[(b.start + r, l)] = (arrays[(l, j)], r)
        for k, layers in enumerate(self.plan):
            if not layers:
                continue
            rows = self.counts[k, i0:i1]
            width = layers[-1][1] + layers[-1][2]  # the member's dropout units per row
            draws = self.rngs[k].random(int(rows.sum()) * width, dtype=np.float32)
            full = int(np.argmin(rows == B)) if (rows != B).any() else T  # leading full steps
            block = draws[: full * B * width].reshape(full, B * width)
            for l, w, off in layers:
                arr, r = where[(k, l)]
                arr[r, :full, :B, :w] = block[:, B * off : B * (off + w)].reshape(full, B, w)
            pos = full * B * width
            for t in range(full, T):  # the member's last step, shorter or B + 1 rows (then empty ones)
                c = int(rows[t])
                for l, w, off in layers:
                    arr, r = where[(k, l)]
                    arr[r, t, :c, :w] = draws[pos + c * off : pos + c * (off + w)].reshape(c, w)
                pos += c * width
        for key, m in self.masks.items():
            u = torch.from_numpy(arrays[key][:, :T]).to(self.device)
            torch.mul(u >= self.keep[key], self.scale[key], out=m[:, :T])
        self.start = i0
