"""The population engine: K differently-configured networks trained as one batched computation.

Member k computes what ``shoal.engine.train`` computes for its config, seed and data (same initial
weights, data order, dropout masks, batch-norm statistics and optimizer arithmetic), to float
rounding. Members share the batch size and model family; everything else may differ, including
the epoch each member is at and the data it trains on (k-fold folds become members).

How it is fast: members are bucketed by layer shape (see ``_pop_layout``) so a member costs its own
FLOPs; all parameters live in one flat buffer so the four optimizer families are one elementwise
pass (``_pop_optim``; a small C kernel on CPU, ``_pop_native``); MLP members train without an autograd graph (``_pop_backward``);
dropout masks come from NumPy, a chunk of steps per call (``_pop_dropout``). On CPU a CNN population
is correct but not faster than one model at a time (grouped convolutions were measured at 0.85x).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Hashable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from shoal._errors import ConfigError
from shoal.engine._config import FAMILIES, batch_bounds, dropout_rng, epoch_order, lr_at, normalize
from shoal.engine._models import build_model
from shoal.engine._pop_backward import mlp_step
from shoal.engine._pop_dropout import DropoutMasks
from shoal.engine._pop_forward import forward
from shoal.engine._pop_layout import Layout, member_specs
from shoal.engine import _pop_optim
from shoal.engine._pop_optim import Coefficients, flat_update
from shoal.engine._pop_padding import plan_padding
from shoal.engine._single import EVAL_CHUNK, EpochRecord, TensorData

__all__ = ["Population"]


@dataclass(eq=False)
class _Member:
    key: Hashable
    cfg: dict
    seed: int
    data: TensorData
    epochs: int
    specs: tuple
    state: dict = field(default_factory=dict)  # own tensors while not stacked
    pspecs: tuple = ()  # layer shapes in the layout: specs, or padded wider (see _pop_padding)
    epoch: int = 0
    steps: int = 0

    def sort_key(self) -> tuple:
        return (self.pspecs, self.cfg["activation"], self.cfg["batch_norm"])


def _initial_state(model: torch.nn.Module, family: str) -> dict:
    blocks = list(model.blocks) + ([model.dense] if family == "cnn" else [])
    state = {}
    for l, blk in enumerate(blocks):
        w = blk.layer.weight.detach()
        state[("W", l)] = w if w.dim() == 4 else w.t()
        state[("b", l)] = blk.layer.bias.detach()
        if blk.bn is not None:
            state[("g", l)], state[("be", l)] = blk.bn.weight.detach(), blk.bn.bias.detach()
    state[("W", -1)], state[("b", -1)] = model.head.weight.detach().t(), model.head.bias.detach()
    return {k: v.clone() for k, v in state.items()}


class Population:
    """Members that train together, one epoch at a time.

    Args:
        family: "mlp" or "cnn".
        input_shape: shape of one input row, e.g. ``(1, 8, 8)``.
        n_outputs: classes (classification) or targets (regression).
        task: "classification" or "regression".
        batch_size: shared by every member.
        device: "cpu", "cuda", ...
        pad: let MLP members of equal depth share buckets by padding their widths where the
            cost model of ``_pop_padding`` says it is faster (padded units stay inert). Off by
            default: on the 2-core CPU it was measured no faster (fewer buckets, more FLOPs and
            optimizer traffic); it is meant for GPUs, where launches dominate (not yet measured).

    Example:
        >>> pop = Population(family="mlp", input_shape=(1, 8, 8), n_outputs=10,  # doctest: +SKIP
        ...                  task="classification", batch_size=64)
        >>> pop.add("a", {"lr": 0.01}, seed=0, data=data, epochs=3)  # doctest: +SKIP
        >>> pop.run_epoch()["a"].val_loss  # doctest: +SKIP
    """

    def __init__(self, family: str, input_shape: tuple, n_outputs: int, task: str, batch_size: int,
                 device: str | torch.device = "cpu", pad: bool = False) -> None:
        if family not in FAMILIES:
            raise ConfigError(f"Unknown model family {family!r}. The families are: mlp, cnn.")
        self.family, self.input_shape, self.n_outputs = family, tuple(input_shape), int(n_outputs)
        self.task, self.batch_size, self.device = task, int(batch_size), torch.device(device)
        self.pad = pad  # pad MLP members to shared widths where the cost model says it is faster
        self._members: dict[Hashable, _Member] = {}
        self._layout: Layout | None = None
        self._sources: dict[int, TensorData] = {}

    # ------------------------------------------------------------------ membership
    def add(self, key: Hashable, config: Mapping[str, Any], seed: int, data: TensorData, epochs: int,
            start: Mapping[str, Any] | None = None) -> None:
        """Add a member at its epoch 0 (weights drawn as ``build_model`` draws them for ``seed``), or
        from ``start``, a ``snapshot`` of a member with the same layer shapes (PBT's exploit step,
        resuming on another worker). The config may differ from the snapshot's in everything that
        does not change a shape: learning rate, regularization, dropout, optimizer coefficients."""
        if key in self._members:
            raise ConfigError(f"The population already has a member {key!r}. Use a new key.")
        cfg = normalize(config)
        if int(cfg["batch_size"]) != self.batch_size:
            raise ConfigError(f"The 'batch_size' of member {key!r} must be the population's "
                              f"{self.batch_size}. Got {cfg['batch_size']!r} instead.")
        if tuple(data.input_shape) != self.input_shape or data.task != self.task:
            raise ConfigError(f"Member {key!r} has data of shape {tuple(data.input_shape)} ({data.task}); "
                              f"the population takes {self.input_shape} ({self.task}).")
        specs = member_specs(self.family, self.input_shape, self.n_outputs, cfg)
        if start is None:
            model = build_model(self.family, self.input_shape, self.n_outputs, cfg, seed)
            state, epoch, steps = _initial_state(model, self.family), 0, 0
        else:
            if tuple(start["specs"]) != specs or start["config"]["batch_norm"] != cfg["batch_norm"]:
                raise ConfigError(f"Member {key!r} cannot start from a snapshot of another architecture: "
                                  f"layers {tuple(start['specs'])} vs {specs}, batch norm "
                                  f"{start['config']['batch_norm']!r} vs {cfg['batch_norm']!r}. Change only the learning rate, "
                                  "regularization, dropout or optimizer coefficients when copying a member.")
            state, epoch, steps = start["state"], int(start["epoch"]), int(start["steps"])
        m = _Member(key, cfg, int(seed), data, int(epochs), specs, epoch=epoch, steps=steps,
                    state={k: v.to(self.device, copy=True) for k, v in state.items()})
        self._unstack()
        self._members[key] = m

    def snapshot(self, key: Hashable) -> dict[str, Any]:
        """Everything member ``key`` needs to go on training elsewhere: its weights, optimizer
        moments and batch-norm statistics (on the CPU), epoch, step count, config and seed."""
        m = self._members[key]
        self._unstack()  # one pass saves every member; copies usually come with add / remove anyway
        return {"state": {n: t.detach().to("cpu", copy=True) for n, t in m.state.items()}, "epoch": m.epoch,
                "steps": m.steps, "config": dict(m.cfg), "seed": m.seed, "specs": m.specs}

    def remove(self, key: Hashable) -> None:
        self._unstack()
        del self._members[key]

    def __len__(self) -> int:
        return len(self._members)

    def keys(self) -> list:
        return list(self._members)

    def epoch_of(self, key: Hashable) -> int:
        """Epochs ``key`` has completed."""
        return self._members[key].epoch

    def _unstack(self) -> None:
        if self._layout is not None:
            for m, st in zip(self._layout.members, self._layout.save()):
                m.state = st
            self._layout = None

    def _stack(self) -> Layout:
        if self._layout is None:
            self._plan_padding()
            members = sorted(self._members.values(), key=_Member.sort_key)
            self._layout = Layout(members, self.device)
            self._layout.load([m.state for m in members])
            for m in members:
                m.state = {}
            self._coefs = Coefficients([m.cfg for m in members])
            self._stack_data(members)
        return self._layout

    def _plan_padding(self) -> None:
        members = list(self._members.values())
        if self.family != "mlp" or not self.pad:
            for m in members:
                m.pspecs = m.specs
            return
        n_in = int(np.prod(self.input_shape))
        padded = plan_padding([tuple(s[2] for s in m.specs[:-1]) for m in members], n_in, self.n_outputs,
                              self.batch_size, gpu=self.device.type == "cuda")
        for m, widths in zip(members, padded):
            dims = [n_in, *widths]
            m.pspecs = tuple(("lin", a, b) for a, b in zip(dims[:-1], dims[1:])) + (("lin", dims[-1], self.n_outputs),)

    def _stack_data(self, members: list[_Member]) -> None:
        """One tensor of every distinct data set's rows, so a step gathers all members' batches."""
        sources, offsets, voffsets = {}, [], []
        for m in members:
            sources.setdefault(id(m.data), m.data)
        xs, ys, xv, yv, o, ov, where = [], [], [], [], 0, 0, {}
        for sid, d in sources.items():
            where[sid] = (o, ov)
            xs.append(d.X_train), ys.append(d.y_train), xv.append(d.X_val), yv.append(d.y_val)
            o, ov = o + d.n_train, ov + int(d.X_val.shape[0])
        flat = (lambda t: t.reshape(t.shape[0], -1)) if self.family == "mlp" else (lambda t: t)
        self._X, self._Y = flat(torch.cat(xs).to(self.device)), torch.cat(ys).to(self.device)
        self._Xv, self._Yv = flat(torch.cat(xv).to(self.device)), torch.cat(yv).to(self.device)
        offsets = [where[id(m.data)][0] for m in members]
        voffsets = [where[id(m.data)][1] for m in members]
        self._offsets, self._voffsets = np.array(offsets), np.array(voffsets)
        self._one_val = len(sources) == 1

    # ------------------------------------------------------------------ training
    def run_epoch(self) -> dict[Hashable, EpochRecord]:
        """Train every member one epoch of its own; return each member's record.

        A member whose loss becomes NaN or infinite gets a record with that value (its caller
        fails it and removes it); the other members are unaffected.
        """
        if not self._members:
            return {}
        start = time.perf_counter()
        compiled_before = _pop_optim.compile_seconds
        torch.set_flush_denormal(True)  # subnormals make sqrt ~30x slower on CPU
        layout = self._stack()
        members = layout.members
        K, B = len(members), self.batch_size
        n = np.array([m.data.n_train for m in members])
        # the single engine's batches: a last batch of one row joins the one before (B + 1 rows)
        bounds = [batch_bounds(int(nk), B) for nk in n]
        S = max(len(bd) for bd in bounds)
        counts = np.zeros((K, S), dtype=np.int64)
        idx = np.empty((K, S * B + 1), dtype=np.int64)
        for k, m in enumerate(members):
            counts[k, : len(bounds[k])] = [hi - lo for lo, hi in bounds[k]]
            idx[k, : n[k]] = epoch_order(m.seed, m.epoch, int(n[k])) + self._offsets[k]
            idx[k, n[k] :] = self._offsets[k]
        idx_t = torch.from_numpy(idx).to(self.device)
        lrs = np.array([lr_at(m.cfg, m.epoch, m.epochs) for m in members])
        rngs = [dropout_rng(m.seed, m.epoch) for m in members]
        steps = np.array([m.steps for m in members])
        loss_sum = torch.zeros(K, device=self.device)
        correct = torch.zeros(K, device=self.device)
        leaves = layout.leaves()
        drop = DropoutMasks(layout, rngs, counts, B, self.device)
        for i in range(S):
            c = counts[:, i]
            cmax = int(c.max())
            rows = idx_t[:, i * B : i * B + cmax]
            xb, yb = self._X[rows], self._Y[rows]
            w = None
            if (c != cmax).any():
                w = torch.from_numpy((np.arange(cmax)[None, :] < c[:, None]).astype(np.float32)).to(self.device)
            masks = drop.step(i, cmax)
            if w is not None:
                denom = torch.from_numpy(np.maximum(c, 1).astype(np.float32)).to(self.device)
            if self.family == "mlp":  # hand-written backward: gradients straight into layout.G
                scale = torch.full((K, cmax), 1.0 / cmax, device=self.device) if w is None else w / denom[:, None]
                out, per_row = mlp_step(layout, xb, yb, w, masks, self.task, scale)
            else:
                layout.G.zero_()
                out = forward(layout, xb, True, w, masks)
                per_row = self._loss_rows(out, yb)
            loss = per_row.mean(1) if w is None else (per_row * w).sum(1) / denom
            if self.family != "mlp":
                torch.autograd.backward(loss.sum(), inputs=leaves)
            active = c > 0
            steps = steps + active
            table = torch.from_numpy(self._coefs.table(lrs, steps, None if active.all() else active))
            flat_update(layout.P, layout.G, layout.M, layout.V, layout.codes, table.to(self.device))
            ct = torch.from_numpy(c.astype(np.float32)).to(self.device)
            loss_sum += loss.detach() * ct
            if self.task == "classification":
                hit = (out.detach().argmax(-1) == yb).float()
                correct += hit.sum(1) if w is None else (hit * w).sum(1)
        val_loss, val_acc, scores = self._evaluate(layout)
        train_loss = (loss_sum.cpu().double() / torch.from_numpy(n)).tolist()
        train_acc = (correct.cpu().double() / torch.from_numpy(n)).tolist()
        # the update's one-off compile (first epoch of a process) is nobody's training time
        seconds = time.perf_counter() - start - (_pop_optim.compile_seconds - compiled_before)
        records = {}
        # A member's seconds: its share of the population's time, by multiply-adds per example
        work = np.array([_multiply_adds(m.specs, self.input_shape) * m.data.n_train for m in members], dtype=float)
        share = work / work.sum()
        for k, m in enumerate(members):
            m.steps = int(steps[k])
            m.epoch += 1
            is_cls = self.task == "classification"
            records[m.key] = EpochRecord(
                epoch=m.epoch, train_loss=train_loss[k], train_acc=train_acc[k] if is_cls else None,
                val_loss=val_loss[k], val_acc=val_acc[k] if is_cls else None, lr=float(lrs[k]),
                seconds=seconds * float(share[k]), **scores[k],
            )
        return records

    def _loss_rows(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-row data loss ``[K, B]`` (cross entropy, or squared error averaged over targets)."""
        K, Bn = y.shape[:2]
        if self.task == "classification":
            return F.cross_entropy(out.reshape(K * Bn, -1), y.reshape(-1), reduction="none").view(K, Bn)
        err = out.reshape(y.shape) - y
        return (err * err).reshape(K, Bn, -1).mean(2)

    @torch.no_grad()
    def _evaluate(self, layout: Layout) -> tuple[list[float], list[float], list[dict[str, float]]]:
        members = layout.members
        K = len(members)
        nv = np.array([int(m.data.X_val.shape[0]) for m in members])
        feat = int(np.prod(self._Xv.shape[1:]))
        chunk = int(min(EVAL_CHUNK, max(32, (1 << 23) // max(K * feat, 1))))
        total = torch.zeros(K, dtype=torch.float64, device=self.device)
        correct = torch.zeros(K, dtype=torch.float64, device=self.device)
        preds: list[np.ndarray] = []  # per chunk: [K, rows] labels, or [K, rows, targets]
        truths: list[np.ndarray] = []
        for i in range(0, int(nv.max()), chunk):
            c = np.clip(nv - i, 0, chunk)
            cmax = int(c.max())
            if self._one_val:
                xb = self._Xv[i : i + cmax].unsqueeze(0).expand(K, *self._Xv[i : i + cmax].shape)
                yb = self._Yv[i : i + cmax].unsqueeze(0).expand(K, *self._Yv[i : i + cmax].shape)
            else:
                rows = np.minimum(np.arange(i, i + cmax)[None, :], np.maximum(nv[:, None] - 1, 0))
                rows_t = torch.from_numpy(rows + self._voffsets[:, None]).to(self.device)
                xb, yb = self._Xv[rows_t], self._Yv[rows_t]
            out = forward(layout, xb.contiguous(), False)
            w = torch.from_numpy((np.arange(cmax)[None, :] < c[:, None]).astype(np.float64)).to(self.device)
            total += (self._loss_rows(out, yb).double() * w).sum(1)
            if self.task == "classification":
                pred = out.argmax(-1)
                correct += ((pred == yb).double() * w).sum(1)
                preds.append(pred.cpu().numpy())
            else:
                preds.append(out.reshape(K, cmax, -1).cpu().numpy())
            truths.append(yb.cpu().numpy() if not self._one_val else yb[0].cpu().numpy())
        nvt = torch.from_numpy(nv).double().to(self.device)
        return (total / nvt).tolist(), (correct / nvt).tolist(), self._scores(members, nv, preds, truths)

    def _scores(self, members: list, nv: np.ndarray, preds: list, truths: list) -> list[dict[str, float]]:
        """Each member's balanced accuracy and F1 (or R² and MSE) from its gathered predictions."""
        from shoal.engine._scores import classification_scores, regression_scores

        pred = np.concatenate(preds, axis=1)
        truth = np.concatenate(truths, axis=0 if self._one_val else 1)
        out = []
        for k, m in enumerate(members):
            p = pred[k, : nv[k]]
            y = truth[: nv[k]] if self._one_val else truth[k, : nv[k]]
            if self.task == "classification":
                out.append(classification_scores(y, p, self.n_outputs))
            else:
                out.append(regression_scores(y.reshape(len(p), -1), p, m.data.y_scale))
        return out


def _multiply_adds(specs: tuple, input_shape: tuple) -> int:
    """Multiply-adds of one example's forward pass through layers ``specs`` (see member_specs)."""
    h, w = (input_shape[1], input_shape[2]) if len(input_shape) == 3 else (1, 1)
    total = 0
    for spec in specs:
        if spec[0] == "conv":
            total += spec[1] * spec[2] * spec[3] * spec[3] * h * w
            h, w = (h // 2, w // 2) if spec[4] else (h, w)
        else:
            total += spec[1] * spec[2]
    return max(total, 1)
