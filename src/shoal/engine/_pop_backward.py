"""One training step of an MLP population with a hand-written backward pass (no autograd graph).

Autograd on a bucketed population records a graph of ~1,500 nodes per step (slices of parent
buckets, views, transposes, one gradient accumulation per stacked tensor), and every slice's
backward writes a zero-filled tensor of its whole parent: on small networks the step was bound
by that bookkeeping, not by arithmetic. Here the forward keeps what the backward needs, and the
backward walks the buckets from the heads to the first layer with the same ATen kernels autograd
would call (``native_batch_norm_backward``, ``gelu_backward``, ...), writing each gradient
straight into its slice of the flat gradient buffer (``bmm(..., out=)``): no zeroing pass, no
accumulation. Gradients of a bucket's output are assembled in place by its children, which own
disjoint member ranges of it.

The convolutional family keeps autograd (``_pop_forward``).
"""

from __future__ import annotations

import torch

from shoal.engine._models import activation_fn
from shoal.engine._pop_forward import BN_EPS, BN_MOMENTUM
from shoal.engine._pop_layout import Bucket, Layout

__all__ = ["mlp_step"]

_aten = torch.ops.aten
_USES_RESULT = ("relu", "tanh", "sigmoid")  # their backward reads the output, the others the input


def _views(b: Bucket) -> dict:
    """The bucket's parameter, gradient and statistics views that every step uses, made once per
    layout: they are views of the layout's flat buffers, which live as long as the layout, and
    building them again each step cost ~20 small ops per bucket (slices, detaches, reshapes)."""
    v = b.cache.get("views")
    if v is None:
        W, bias = b.tensors["W"], b.tensors["b"]
        v = {"W": W.detach(), "Wt": W.detach().transpose(1, 2), "bias": bias.detach().unsqueeze(1),
             "dW": W.grad, "db": bias.grad, "bn": {}}
        if "g" in b.tensors:
            g, be = b.tensors["g"], b.tensors["be"]
            for a, e, _, mode in b.runs:
                if mode == "off":
                    continue
                rm, rv = b.stats["rm"][a:e], b.stats["rv"][a:e]
                gr, ber = g.detach()[a:e], be.detach()[a:e]
                # Flattened gamma and beta only where flattening is a view: a member's row is padded
                # to whole optimizer blocks (8 features take 16 floats), and there reshape(-1)
                # copies, which would freeze the values of the step the copy was made at.
                flat = gr.is_contiguous()
                v["bn"][a] = {"g": gr, "be": ber, "rm": rm, "rv": rv,
                              "g1": gr.view(-1) if flat else None, "be1": ber.view(-1) if flat else None,
                              "rm1": rm.view(-1), "rv1": rv.view(-1),
                              "dg": g.grad[a:e], "dbe": be.grad[a:e]}
        b.cache["views"] = v
    return v


def _flat(v: dict, name: str) -> torch.Tensor:
    """A batch-norm run's gamma or beta (``name`` "g" or "be") as one flat vector: the cached view,
    or a copy made now where flattening copies (see ``_views``)."""
    flat = v[name + "1"]
    return flat if flat is not None else v[name].reshape(-1)


def _act_backward(name: str, g: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The gradient autograd computes for ``activation_fn(name)`` (same kernels)."""
    if name == "relu":
        return _aten.threshold_backward(g, y, 0)
    if name == "tanh":
        return _aten.tanh_backward(g, y)
    if name == "sigmoid":
        return _aten.sigmoid_backward(g, y)
    if name == "leaky_relu":
        return _aten.leaky_relu_backward(g, x, 0.01, False)
    if name == "elu":
        return _aten.elu_backward(g, 1.0, 1, 1, False, x)
    if name == "gelu":
        return _aten.gelu_backward(g, x, approximate="none")
    return _aten.silu_backward(g, x)


def _bn_forward(h: torch.Tensor, b: Bucket, a: int, e: int, w: torch.Tensor | None):
    """Training-mode batch norm of members ``a:e`` of bucket ``b`` (see ``_pop_forward._bn``); the
    running statistics are updated in place. Returns the output and what the backward needs."""
    k, bsz = e - a, h.shape[1]
    v = _views(b)["bn"][a]
    g, be, rm, rv = v["g"], v["be"], v["rm"], v["rv"]
    if w is None:
        x = h.transpose(0, 1).reshape(bsz, -1)
        y, mean, invstd = _aten.native_batch_norm(x, _flat(v, "g"), _flat(v, "be"), v["rm1"], v["rv1"], True,
                                                  BN_MOMENTUM, BN_EPS)
        # contiguous, as the single engine's batch-norm output is: activations such as GELU round a
        # strided input differently, and this view is strided only when the run has 2+ members
        return y.view(bsz, k, -1).transpose(0, 1).contiguous(), (None, x, mean, invstd)
    counts = w.sum(1).long().tolist()  # rows differ per member: each member on its own rows
    outs, saved = [], []
    for r, c in enumerate(counts):
        if c == 0:
            outs.append(h[r])
            saved.append(None)
            continue
        x = h[r, :c]
        y, mean, invstd = _aten.native_batch_norm(x, g[r], be[r], rm[r], rv[r], True, BN_MOMENTUM, BN_EPS)
        outs.append(torch.cat([y, h[r, c:]]) if c < bsz else y)
        saved.append((x, mean, invstd))
    return torch.stack(outs), (counts, saved, None, None)


def _bn_backward(dy: torch.Tensor, b: Bucket, a: int, e: int, ctx) -> torch.Tensor:
    k, bsz = dy.shape[:2]
    v = _views(b)["bn"][a]
    g, rm, rv, gg, gbe = v["g"], v["rm"], v["rv"], v["dg"], v["dbe"]
    counts, x, mean, invstd = ctx
    if counts is None:
        d = dy.transpose(0, 1).reshape(bsz, -1)
        dx, dg, dbe = _aten.native_batch_norm_backward(d, x, _flat(v, "g"), v["rm1"], v["rv1"], mean, invstd,
                                                       True, BN_EPS, [True, True, True])
        gg.copy_(dg.view(k, -1))
        gbe.copy_(dbe.view(k, -1))
        return dx.view(bsz, k, -1).transpose(0, 1)
    outs = []
    for r, (c, saved) in enumerate(zip(counts, x)):
        if saved is None:
            gg[r].zero_()
            gbe[r].zero_()
            outs.append(dy[r])
            continue
        xr, mean, invstd = saved
        dx, dg, dbe = _aten.native_batch_norm_backward(dy[r, :c], xr, g[r], rm[r], rv[r], mean, invstd, True, BN_EPS,
                                                       [True, True, True])
        gg[r].copy_(dg)
        gbe[r].copy_(dbe)
        outs.append(torch.cat([dx, dy[r, c:]]) if c < bsz else dx)
    return torch.stack(outs)


def _forward(b: Bucket, x: torch.Tensor, w: torch.Tensor | None, mask: torch.Tensor | None):
    """A bucket's training forward: its output and the tape its backward reads."""
    v = _views(b)
    h = torch.baddbmm(v["bias"], x, v["W"])
    if b.head:
        return h, None
    chunks = [h] if len(b.runs) == 1 else h.split([e - a for a, e, _, _ in b.runs])
    parts, tape = [], []
    for (a, e, act, bn), z in zip(b.runs, chunks):
        ww = None if w is None else w[a:e]
        ctx0 = ctx1 = None
        if bn == "before":
            z, ctx0 = _bn_forward(z, b, a, e, ww)
        u = activation_fn(act)(z)
        v = u
        if bn == "after":
            v, ctx1 = _bn_forward(u, b, a, e, ww)
        parts.append(v)
        tape.append((ctx0, z, u, ctx1))
    y = parts[0] if len(parts) == 1 else torch.cat(parts)
    if mask is not None:
        y = y * mask
    return y, tape


def _backward(b: Bucket, x: torch.Tensor, dy: torch.Tensor, tape, mask: torch.Tensor | None,
              dx: torch.Tensor | None) -> None:
    """Write the bucket's weight and bias gradients into the flat gradient buffer and, when ``dx``
    is given, the gradient of its input into ``dx``."""
    if b.head:
        dh = dy
    else:
        if mask is not None:
            dy = dy * mask
        chunks = [dy] if len(b.runs) == 1 else dy.split([e - a for a, e, _, _ in b.runs])
        parts = []
        for (a, e, act, bn), d, (ctx0, z, u, ctx1) in zip(b.runs, chunks, tape):
            if bn == "after":
                d = _bn_backward(d, b, a, e, ctx1)
            d = _act_backward(act, d, z, u)
            if bn == "before":
                d = _bn_backward(d, b, a, e, ctx0)
            parts.append(d)
        dh = parts[0] if len(parts) == 1 else torch.cat(parts)
    v = _views(b)
    torch.bmm(x.transpose(1, 2), dh, out=v["dW"])
    torch.sum(dh, 1, out=v["db"])
    if dx is not None:
        torch.bmm(dh, v["Wt"], out=dx)


def _loss(out: torch.Tensor, y: torch.Tensor, task: str, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row data loss ``[K, B]`` and the gradient of ``sum_k sum_i scale[k, i] * loss[k, i]``
    with respect to ``out`` (cross entropy as log-softmax and negative log-likelihood; or squared
    error averaged over targets), with autograd's kernels."""
    if task == "classification":
        lsm = torch.log_softmax(out, -1)
        per_row = -lsm.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        go = torch.zeros_like(lsm).scatter_(-1, y.unsqueeze(-1), -scale.unsqueeze(-1))
        return per_row, _aten._log_softmax_backward_data(go, lsm, -1, lsm.dtype)
    K, B = y.shape[:2]
    err = out.reshape(y.shape) - y
    sq = (err * err).reshape(K, B, -1)
    g = (scale / sq.shape[2]).reshape(K, B, *([1] * (err.dim() - 2)))
    return sq.mean(2), (g * err + g * err).reshape(out.shape)


@torch.no_grad()
def mlp_step(layout: Layout, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None, masks: dict | None,
             task: str, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward of one step: every gradient is written into ``layout.G``.

    Args:
        layout: the stacked members (MLP family).
        x, y: each member's rows ``[K, B, features]`` and targets.
        w: ``[K, B]`` row mask (1 = a real row) when members have different numbers of rows.
        masks: dropout masks per (layer, bucket), already scaled.
        task: "classification" or "regression".
        scale: ``[K, B]`` weight of each row's loss in its member's loss (1/rows, 0 for padding).

    Returns:
        The logits ``[K, B, outputs]`` and the per-row losses ``[K, B]``.
    """
    tapes: list[list] = []
    outs: list[list[torch.Tensor]] = []
    for l, buckets in enumerate(layout.layers):
        cur, tp = [], []
        for j, b in enumerate(buckets):
            inp = x[b.start : b.end] if l == 0 else outs[l - 1][b.parent][b.offset : b.offset + b.n]
            mask = None if masks is None else masks.get((l, j))
            o, t = _forward(b, inp, None if w is None else w[b.start : b.end], mask)
            cur.append(o)
            tp.append((inp, t, mask))
        outs.append(cur)
        tapes.append(tp)
    logits, head_inputs = [], []
    for b in layout.heads:
        depth = len(layout.members[b.start].specs) - 1
        inp = x[b.start : b.end] if depth == 0 else outs[depth - 1][b.parent][b.offset : b.offset + b.n]
        logits.append(_forward(b, inp, None, None)[0])
        head_inputs.append((depth, inp))
    out = logits[0] if len(logits) == 1 else torch.cat(logits)
    per_row, dout = _loss(out, y, task, scale)
    # Gradients of each hidden bucket's output, filled by the buckets it feeds (disjoint ranges).
    grads = [[torch.empty(o.shape, dtype=o.dtype, device=o.device) for o in cur] for cur in outs]
    for b, (depth, inp) in zip(layout.heads, head_inputs):
        dx = None if depth == 0 else grads[depth - 1][b.parent][b.offset : b.offset + b.n]
        _backward(b, inp, dout[b.start : b.end], None, None, dx)
    for l in range(len(layout.layers) - 1, -1, -1):
        for j, b in enumerate(layout.layers[l]):
            inp, tape, mask = tapes[l][j]
            dx = None if l == 0 else grads[l - 1][b.parent][b.offset : b.offset + b.n]
            _backward(b, inp, grads[l][j], tape, mask, dx)
    return out, per_row
