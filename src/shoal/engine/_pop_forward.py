"""The batched forward pass of a population layout (autograd does the backward).

Shapes: MLP activations are ``[K_b, B, features]``; conv activations ``[K_b, B, C, H, W]`` (a
transposed view of the grouped convolution's ``[B, K_b * C, H, W]``). ``w`` is an optional
``[K, B]`` row mask (1 = a real row) used when members have different numbers of rows in a step;
batch norm then takes its statistics over each member's real rows only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shoal.engine._models import activation_fn
from shoal.engine._pop_layout import Bucket, Layout

__all__ = ["forward"]

BN_MOMENTUM, BN_EPS = 0.1, 1e-5


def _bn(h: torch.Tensor, b: Bucket, a: int, e: int, train: bool, w: torch.Tensor | None) -> torch.Tensor:
    """torch's own batch norm over the members' features side by side as channels
    ``[B, k * features (, H, W)]``: the same kernels, so the same rounding, as the single engine
    (a bias before batch norm has a true gradient of 0; Adam and RMSprop amplify its rounding)."""
    k, bsz = e - a, h.shape[1]
    g, be = b.tensors["g"][a:e], b.tensors["be"][a:e]
    rm, rv = b.stats["rm"][a:e], b.stats["rv"][a:e]
    if w is None or not train:
        x = h.transpose(0, 1).reshape(bsz, -1, *h.shape[3:])
        y = F.batch_norm(x, rm.view(-1), rv.view(-1), g.reshape(-1), be.reshape(-1), train, BN_MOMENTUM, BN_EPS)
        return y.view(bsz, k, *h.shape[2:]).transpose(0, 1).contiguous()  # see _pop_backward._bn_forward
    # rows differ per member (folds of different sizes, last step): each member on its own rows
    counts = w.sum(1).long().tolist()
    outs = []
    for r, c in enumerate(counts):
        if c == 0:
            outs.append(h[r])
            continue
        y = F.batch_norm(h[r, :c], rm[r], rv[r], g[r], be[r], True, BN_MOMENTUM, BN_EPS)
        outs.append(torch.cat([y, h[r, c:]]) if c < bsz else y)
    return torch.stack(outs)


def _elementwise(h: torch.Tensor, b: Bucket, train: bool, w: torch.Tensor | None) -> torch.Tensor:
    parts = []
    # One split (a single backward node) rather than a slice per run: each slice's backward would
    # write a zero-filled tensor of the whole bucket, quadratic in the number of runs.
    chunks = [h] if len(b.runs) == 1 else h.split([e - a for a, e, _, _ in b.runs])
    for (a, e, act, bn), x in zip(b.runs, chunks):
        ww = None if w is None else w[a:e]
        if bn == "before":
            x = _bn(x, b, a, e, train, ww)
        x = activation_fn(act)(x)
        if bn == "after":
            x = _bn(x, b, a, e, train, ww)
        parts.append(x)
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _layer(x: torch.Tensor, b: Bucket, train: bool, w, mask) -> torch.Tensor:
    W, bias = b.tensors["W"], b.tensors["b"]
    if b.spec[0] == "conv":
        k, bsz = b.n, x.shape[1]
        xx = x.transpose(0, 1).reshape(bsz, -1, *x.shape[3:])
        y = F.conv2d(xx, W.reshape(-1, *W.shape[2:]), bias.reshape(-1), padding=b.spec[3] // 2, groups=k)
        h = y.view(bsz, k, -1, *y.shape[2:]).transpose(0, 1)
    else:
        if x.dim() > 3:
            x = x.reshape(x.shape[0], x.shape[1], -1)
        h = torch.baddbmm(bias.unsqueeze(1), x, W)
    if b.head:
        return h
    h = _elementwise(h, b, train, w)
    if b.spec[0] == "conv" and b.spec[4]:
        k, bsz = h.shape[:2]
        p = F.max_pool2d(h.reshape(k * bsz, *h.shape[2:]), 2)
        h = p.view(k, bsz, *p.shape[1:])
    if mask is not None:
        h = h * mask
    return h


def forward(layout: Layout, x: torch.Tensor, train: bool, w: torch.Tensor | None = None,
            masks: dict | None = None) -> torch.Tensor:
    """Logits ``[K, B, n_out]`` of every member (sorted order) for its rows ``x[k]``."""
    outs: list[list[torch.Tensor]] = []
    for l, buckets in enumerate(layout.layers):
        cur = []
        for j, b in enumerate(buckets):
            inp = x[b.start : b.end] if l == 0 else outs[l - 1][b.parent][b.offset : b.offset + b.n]
            mask = None if masks is None else masks.get((l, j))
            cur.append(_layer(inp, b, train, None if w is None else w[b.start : b.end], mask))
        outs.append(cur)
    logits = []
    for b in layout.heads:
        depth = len(layout.members[b.start].specs) - 1
        inp = x[b.start : b.end] if depth == 0 else outs[depth - 1][b.parent][b.offset : b.offset + b.n]
        logits.append(_layer(inp, b, train, None, None))
    return logits[0] if len(logits) == 1 else torch.cat(logits)
