"""Populations of a user's own ``nn.Module``: K copies trained as one batched computation.

``torch.func`` turns a module into a function of its parameters (``functional_call``); the
parameters of K members are stacked along a leading member axis (``stack_module_state``), and
``vmap(grad(loss), randomness="different")`` computes all K members' gradients in one call. The
optimizer step is written here over the stacked tensors, with one coefficient per member (learning
rate and its schedule, momentum, Adam's betas and epsilon, RMSprop's alpha, weight decay, L1), and
repeats torch.optim's arithmetic (``SGD``, ``RMSprop``, ``Adam``): member k computes what a plain
run of the same module with ``torch.optim`` computes for the same seed and batches (tested).

What the batching needs: every member's module has the same parameter and buffer shapes (members
are grouped by them, see ``signature``), one batch size, and a forward pass ``vmap`` can trace
(no ``.item()``, no Python ``if`` on a tensor's value). A module that cannot be traced (found by a
probe step when its group starts) trains its members one at a time with the same update
(``vmapped`` False, ``reason`` says why). Batch norm works: running statistics are stacked
buffers, updated per member.

Randomness inside the module (dropout) draws from torch's generator, seeded for each epoch by the
members' seeds and epochs: reproducible for the same population, but a member's masks differ from
those of a plain run (only deterministic modules are compared exactly).
"""

from __future__ import annotations

import copy
import difflib
import inspect
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterable, Mapping

import numpy as np
import torch

from shoal._errors import ConfigError
from shoal.engine._config import batch_bounds, epoch_order, lr_at, normalize
from shoal.engine._pool import GroupPool
from shoal.engine._single import EVAL_CHUNK, EpochRecord, data_loss

if TYPE_CHECKING:
    from torch import nn

    from shoal.engine._single import TensorData

__all__ = ["FunctionalPopulation", "ModulePlacer", "ModulePool", "OPTIM_KEYS", "build_member", "optim_config",
           "signature", "vmap_problem"]

# The configuration keys the training loop reads; every other key is the model's.
OPTIM_KEYS = ("optimizer", "lr", "momentum", "rmsprop_alpha", "beta1", "beta2", "eps", "weight_decay", "l1",
              "batch_size", "lr_decay", "step_size", "step_gamma", "exp_gamma")
# Arguments a module class may name to receive the data's shape instead of a searched value.
DATA_ARGS = ("input_shape", "n_inputs", "in_features", "n_outputs", "out_features", "n_classes")


def optim_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The training settings of a configuration, with shoal's defaults (Adam, lr 1e-3, batch 64)
    and its validation (``ConfigError`` for a bad value)."""
    cfg = normalize({k: config[k] for k in OPTIM_KEYS if k in config})
    return {k: cfg[k] for k in OPTIM_KEYS}


def build_member(model: Any, config: Mapping[str, Any], seed: int, data: TensorData) -> nn.Module:
    """The member's module, its weights initialized under ``torch.manual_seed(seed)`` (the global
    generator is restored afterwards).

    ``model`` is an ``nn.Module`` subclass (called with the configuration values its constructor
    names, and the data's shape for arguments named as in ``DATA_ARGS``) or a builder
    ``build(config) -> nn.Module``.
    """
    from torch import nn

    if isinstance(model, nn.Module):
        raise ConfigError("The 'model' must be an nn.Module class or a builder build(config) -> nn.Module, so that "
                          f"each trial gets its own weights. Got an instance of {type(model).__name__} instead.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if isinstance(model, type) and issubclass(model, nn.Module):
            module = model(**_class_kwargs(model, config, data))
        elif callable(model):
            module = model(dict(config))
        else:
            raise ConfigError(f"The 'model' must be an nn.Module class or a builder function. Got {model!r} instead.")
    if not isinstance(module, nn.Module):
        raise ConfigError(f"The model builder must return an nn.Module. Got {type(module).__name__} instead.")
    return module.to(data.X_train.device)


def _class_kwargs(cls: type, config: Mapping[str, Any], data: TensorData) -> dict[str, Any]:
    shape = tuple(data.input_shape)
    given = {"input_shape": shape, "n_inputs": int(np.prod(shape)), "in_features": int(np.prod(shape)),
             "n_outputs": data.n_outputs, "out_features": data.n_outputs, "n_classes": data.n_outputs}
    check_class_args(cls, [*config, *given])
    return {name: config[name] if name in config else given[name] for name in _args(cls)
            if name in config or name in given}


def _args(cls: type) -> dict[str, inspect.Parameter]:
    return {name: p for name, p in inspect.signature(cls.__init__).parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def check_class_args(cls: type, available: Iterable[str]) -> None:
    """Every argument of ``cls`` without a default is among ``available`` (the space's keys and
    ``DATA_ARGS``): checked once before a study starts, and at each build."""
    have = set(available)
    missing = [name for name, p in _args(cls).items() if name not in have and p.default is p.empty]
    if missing:
        raise ConfigError(f"{cls.__name__}() needs {missing}, which neither the search space nor the data gives: "
                          f"add them to the space (a Fixed value for a constant) or give them defaults.")


def check_read(cls: type, names: Iterable[str], conditions: Iterable[str] = (), what: str = "The space's parameter(s)",
               waste: str = "every trial would sample them for nothing") -> None:
    """Every name is read: by ``cls`` (an argument of its constructor) or by the training loop
    (``OPTIM_KEYS``), or it is a condition of another parameter. A misspelled name would otherwise
    be recorded with every trial and change nothing."""
    if any(p.kind == p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values()):
        return  # **kwargs: the class may read anything
    readers = set(_args(cls)) | set(OPTIM_KEYS)
    unread = [n for n in names if n not in readers and n not in set(conditions)]
    if unread:
        close = difflib.get_close_matches(unread[0], sorted(readers), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{what} {unread} are read neither by {cls.__name__}() (its arguments: "
                          f"{', '.join(_args(cls)) or 'none'}) nor by the training loop ({', '.join(OPTIM_KEYS)}): "
                          f"{waste}.{hint} Rename or drop them.")


def signature(module: nn.Module) -> tuple:
    """What must match for modules to train in one population: names, shapes and dtypes of the
    parameters and buffers."""
    return tuple((name, tuple(t.shape), str(t.dtype)) for name, t in
                 [*module.named_parameters(), *module.named_buffers()])


@dataclass
class _Member:
    key: Hashable
    cfg: dict[str, Any]  # optim_config of the member's configuration
    seed: int
    epochs: int
    epoch: int = 0
    step: int = 0  # optimizer steps taken (Adam's bias correction)


class FunctionalPopulation:
    """Members sharing one module signature and batch size, trained together on one data split.

    The pool interface of the built-in engine: ``add``, ``remove``, ``run_epoch`` (a record per
    member), ``snapshot`` (weights, buffers, optimizer state and position, for PBT), ``keys``.

    Args:
        model: the module class or builder (see ``build_member``).
        data: the split every member trains on.
        batch_size: the members' batch size.
        vmap: batch the members with ``torch.func.vmap`` (False: one member at a time, same update).

    Example:
        >>> pop = FunctionalPopulation(MyNet, data, batch_size=64)          # doctest: +SKIP
        >>> pop.add("a", {"lr": 0.01}, seed=1, data=data, epochs=5)        # doctest: +SKIP
        >>> pop.run_epoch()["a"].val_loss                                  # doctest: +SKIP
    """

    def __init__(self, model: Any, data: TensorData, batch_size: int, vmap: bool = True) -> None:
        self.model, self.data, self.batch_size = model, data, int(batch_size)
        self.vmapped, self.reason = bool(vmap), None if vmap else "asked for one member at a time"
        self.members: list[_Member] = []
        self.base: nn.Module | None = None  # the module's structure on the meta device
        self.sig: tuple | None = None
        self.decay: dict[str, bool] = {}
        self.params: dict[str, torch.Tensor] = {}
        self.buffers: dict[str, torch.Tensor] = {}
        self.m: dict[str, torch.Tensor] = {}  # momentum buffer (SGD) or first moment (Adam)
        self.v: dict[str, torch.Tensor] = {}  # second moment (Adam) or square average (RMSprop)

    # ------------------------------------------------------------------ members
    def add(self, key: Hashable, config: Mapping[str, Any], seed: int, data: TensorData | None = None,
            epochs: int = 1, start: Mapping[str, Any] | None = None, module: nn.Module | None = None) -> None:
        """Add a member built from ``config`` with ``seed`` (or ``module``, already built); ``start``
        is a ``snapshot`` to continue from (PBT's copies, resumed runs)."""
        cfg = optim_config(config)
        if int(cfg["batch_size"]) != self.batch_size:
            raise ConfigError(f"batch size {cfg['batch_size']} joined a population of batch size {self.batch_size}")
        module = module if module is not None else build_member(self.model, config, seed, self.data)
        sig = signature(module)
        if self.sig is None:
            self.sig, self.base = sig, copy.deepcopy(module).to("meta")
            self.decay = {n: p.dim() > 1 for n, p in module.named_parameters()}
            if self.vmapped:
                self.reason = self._probe(module)
                self.vmapped = self.reason is None
        elif sig != self.sig:
            raise ConfigError("this member's module has other parameter shapes than the population's")
        params = {n: p.detach().clone() for n, p in module.named_parameters()}
        buffers = {n: b.detach().clone() for n, b in module.named_buffers()}
        m = {n: torch.zeros_like(p) for n, p in params.items()}
        v = {n: torch.zeros_like(p) for n, p in params.items()}
        member = _Member(key, cfg, int(seed), int(epochs))
        if start is not None:
            params, buffers = _load(params, start["params"]), _load(buffers, start["buffers"])
            m, v = _load(m, start["m"]), _load(v, start["v"])
            member.epoch, member.step = int(start["epoch"]), int(start["step"])
        for store, new in ((self.params, params), (self.buffers, buffers), (self.m, m), (self.v, v)):
            for n, t in new.items():
                store[n] = torch.cat([store[n], t[None]]) if n in store else t[None].clone()
        self.members.append(member)

    def remove(self, key: Hashable) -> None:
        i = self._index(key)
        if i is None:
            return
        del self.members[i]
        keep = torch.tensor([j for j in range(len(self.members) + 1) if j != i], dtype=torch.long)
        for store in (self.params, self.buffers, self.m, self.v):
            for n in list(store):
                store[n] = store[n].index_select(0, keep.to(store[n].device))

    def __len__(self) -> int:
        return len(self.members)

    def keys(self) -> list:
        return [m.key for m in self.members]

    def epoch_of(self, key: Hashable) -> int:
        return self.members[self._index(key)].epoch

    def snapshot(self, key: Hashable) -> dict[str, Any]:
        """Member ``key``'s weights, buffers, optimizer state, epoch and step count (copies)."""
        i = self._index(key)
        member = self.members[i]

        def take(store):
            return {n: t[i].detach().clone() for n, t in store.items()}

        return {"params": take(self.params), "buffers": take(self.buffers), "m": take(self.m), "v": take(self.v),
                "epoch": member.epoch, "step": member.step}

    def state_dict(self, key: Hashable) -> dict[str, torch.Tensor]:
        """Member ``key``'s weights and buffers as the module's ``state_dict`` (load it into a fresh
        module to use the trained model)."""
        snap = self.snapshot(key)
        return {**snap["params"], **snap["buffers"]}

    def _index(self, key: Hashable) -> int | None:
        return next((i for i, m in enumerate(self.members) if m.key == key), None)

    # ------------------------------------------------------------------ training
    def _loss_fn(self, task: str, l1_on: bool) -> Callable:
        return _member_loss(self.base, self.decay, task, l1_on)

    def _probe(self, module: nn.Module) -> str | None:
        return vmap_problem(module, self.data, self.base)

    def run_epoch(self) -> dict[Hashable, EpochRecord]:
        """One epoch of every member: each its own data order and learning rate, then validation."""
        if not self.members:
            return {}
        from torch.func import grad, vmap

        start = time.perf_counter()
        data, members, K = self.data, self.members, len(self.members)
        dev = data.X_train.device
        n = data.n_train
        lrs = [lr_at(m.cfg, m.epoch, m.epochs) for m in members]
        orders = torch.from_numpy(np.stack([epoch_order(m.seed, m.epoch, n) for m in members])).to(dev)
        l1 = torch.tensor([float(m.cfg["l1"]) for m in members], device=dev)
        loss_fn = self._loss_fn(data.task, bool((l1 > 0).any()))
        step = grad(loss_fn, has_aux=True)
        batched = vmap(step, randomness="different") if self.vmapped else None
        is_cls = data.task == "classification"
        loss_sum = torch.zeros(K, device=dev)
        correct = torch.zeros(K, device=dev, dtype=torch.long)
        self.base.train()
        with torch.random.fork_rng(devices=[]):
            # randomness inside the module (dropout): reproducible for the same members and epochs
            torch.manual_seed(int(np.random.SeedSequence([m.seed for m in members] + [m.epoch for m in members])
                                  .generate_state(1)[0]))
            for lo, hi in batch_bounds(n, self.batch_size):
                idx = orders[:, lo:hi]
                xb, yb = data.X_train[idx], data.y_train[idx]
                if batched is not None:
                    grads, (loss, out) = batched(self.params, self.buffers, xb, yb, l1)
                else:
                    grads, loss, out = self._one_at_a_time(step, xb, yb, l1)
                self._update(grads, lrs)
                loss_sum += loss.detach() * (hi - lo)
                if is_cls:
                    correct += (out.detach().argmax(-1) == yb).sum(1)
        val_loss, val_acc = self._evaluate()
        seconds = time.perf_counter() - start
        train_loss = (loss_sum / n).tolist()
        train_acc = (correct.double() / n).tolist()
        records = {}
        for k, m in enumerate(members):
            m.epoch += 1
            records[m.key] = EpochRecord(epoch=m.epoch, train_loss=train_loss[k],
                                         train_acc=train_acc[k] if is_cls else None, val_loss=val_loss[k],
                                         val_acc=val_acc[k] if is_cls else None, lr=lrs[k], seconds=seconds)
        return records

    def _one_at_a_time(self, step: Callable, xb, yb, l1):
        grads: dict[str, list] = {n: [] for n in self.params}
        losses, outs = [], []
        for k in range(len(self.members)):
            p = {n: t[k] for n, t in self.params.items()}
            b = {n: t[k] for n, t in self.buffers.items()}  # views: batch norm updates its member's row
            g, (loss, out) = step(p, b, xb[k], yb[k], l1[k])
            for n in grads:
                grads[n].append(g[n])
            losses.append(loss)
            outs.append(out)
        return {n: torch.stack(v) for n, v in grads.items()}, torch.stack(losses), torch.stack(outs)

    @torch.no_grad()
    def _update(self, grads: dict[str, torch.Tensor], lrs: list[float]) -> None:
        """One optimizer step of every member, as torch.optim computes it (single-tensor path)."""
        members, dev = self.members, next(iter(self.params.values())).device
        for m in members:
            m.step += 1

        def col(values) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32, device=dev)

        lr = col(lrs)
        wd = col([m.cfg["weight_decay"] for m in members])
        kinds = [m.cfg["optimizer"] for m in members]
        present = set(kinds)
        mom = col([m.cfg["momentum"] if k == "momentum" else 0.0 for m, k in zip(members, kinds)])
        # 1 - beta in float64 first, as torch.optim does (1 - float32(0.999) is off by 1e-5 relative)
        b1c = col([1 - m.cfg["beta1"] for m in members])
        b2 = col([m.cfg["beta2"] for m in members])
        b2c = col([1 - m.cfg["beta2"] for m in members])
        alpha = col([m.cfg["rmsprop_alpha"] for m in members])
        alphac = col([1 - m.cfg["rmsprop_alpha"] for m in members])
        eps = col([m.cfg["eps"] for m in members])
        adam_size = col([lr_ / (1 - m.cfg["beta1"] ** m.step) for lr_, m in zip(lrs, members)])
        adam_bc2 = col([math.sqrt(1 - m.cfg["beta2"] ** m.step) for m in members])
        masks = {kind: col([k2 == kind for k2 in kinds]) > 0 for kind in present}
        for name, p in self.params.items():
            g = grads[name]
            shape = (len(members),) + (1,) * (p.dim() - 1)

            def c(t: torch.Tensor) -> torch.Tensor:
                return t.view(shape)

            if self.decay[name]:
                g = g + c(wd) * p
            new_p, new_m, new_v = p, self.m[name], self.v[name]
            for kind in present:
                if kind in ("sgd", "momentum"):
                    mb = c(mom) * self.m[name] + g
                    cand = (p - c(lr) * mb, mb, self.v[name])
                elif kind == "rmsprop":
                    sq = c(alpha) * self.v[name] + c(alphac) * g * g
                    cand = (p - c(lr) * g / (sq.sqrt() + c(eps)), self.m[name], sq)
                else:  # adam
                    ea = self.m[name].lerp(g, c(b1c))
                    sq = c(b2) * self.v[name] + c(b2c) * g * g
                    cand = (p - c(adam_size) * ea / (sq.sqrt() / c(adam_bc2) + c(eps)), ea, sq)
                if len(present) == 1:
                    new_p, new_m, new_v = cand
                else:
                    mask = c(masks[kind])
                    new_p = torch.where(mask, cand[0], new_p)
                    new_m = torch.where(mask, cand[1], new_m)
                    new_v = torch.where(mask, cand[2], new_v)
            self.params[name], self.m[name], self.v[name] = new_p, new_m, new_v

    @torch.no_grad()
    def _evaluate(self) -> tuple[list[float], list[float]]:
        from torch.func import functional_call, vmap

        data, base, K = self.data, self.base, len(self.members)
        base.eval()
        is_cls = data.task == "classification"

        def member_eval(params, buffers, x, y):
            out = functional_call(base, (params, buffers), (x,))
            hits = (out.argmax(-1) == y).sum() if is_cls else torch.zeros((), dtype=torch.long, device=x.device)
            return data_loss(out, y, data.task), hits

        total = torch.zeros(K, dtype=torch.float64, device=data.X_val.device)
        hits = torch.zeros(K, dtype=torch.long, device=data.X_val.device)
        for i in range(0, data.X_val.shape[0], EVAL_CHUNK):
            x, y = data.X_val[i : i + EVAL_CHUNK], data.y_val[i : i + EVAL_CHUNK]
            if self.vmapped:
                loss, h = vmap(member_eval, in_dims=(0, 0, None, None), randomness="different")(
                    self.params, self.buffers, x, y)
            else:
                pairs = [member_eval({n: t[k] for n, t in self.params.items()},
                                     {n: t[k] for n, t in self.buffers.items()}, x, y) for k in range(K)]
                loss, h = torch.stack([a for a, _ in pairs]), torch.stack([b for _, b in pairs])
            total += loss.double() * y.shape[0]
            hits += h
        nval = data.X_val.shape[0]
        return (total / nval).tolist(), (hits.double() / nval).tolist()


def _member_loss(base: nn.Module, decay: Mapping[str, bool], task: str, l1_on: bool) -> Callable:
    """One member's loss as a function of its parameters and buffers (for ``grad`` and ``vmap``)."""
    from torch.func import functional_call

    def loss(params, buffers, x, y, l1):
        out = functional_call(base, (params, buffers), (x,))
        data = data_loss(out, y, task)
        total = data
        if l1_on:
            total = data + l1 * sum(p.abs().sum() for n, p in params.items() if decay[n])
        return total, (data, out)

    return loss


def vmap_problem(module: nn.Module, data: TensorData, base: nn.Module | None = None) -> str | None:
    """Why ``vmap`` cannot batch ``module`` (a gradient step on two copies of it), or None."""
    from torch.func import grad, vmap

    try:
        base = base if base is not None else copy.deepcopy(module).to("meta")
        decay = {n: p.dim() > 1 for n, p in module.named_parameters()}
        params = {n: torch.stack([p.detach()] * 2) for n, p in module.named_parameters()}
        buffers = {n: torch.stack([b.detach()] * 2) for n, b in module.named_buffers()}
        rows = min(2, data.n_train)
        x = torch.stack([data.X_train[:rows]] * 2)
        y = torch.stack([data.y_train[:rows]] * 2)
        l1 = torch.zeros(2, device=x.device)
        base.train()
        with torch.random.fork_rng(devices=[]):
            vmap(grad(_member_loss(base, decay, data.task, False), has_aux=True), randomness="different")(
                params, buffers, x, y, l1)
    except Exception as exc:
        first = str(exc).strip().split("\n")[0][:300]
        return f"torch.func.vmap cannot batch this module ({type(exc).__name__}: {first})"
    return None


def _load(into: dict[str, torch.Tensor], saved: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for n, t in into.items():
        if n not in saved or tuple(saved[n].shape) != tuple(t.shape):
            raise ConfigError(f"the saved state does not fit this module ({n}: saved "
                              f"{tuple(saved[n].shape) if n in saved else 'nothing'}, module {tuple(t.shape)}); "
                              "architecture parameters must stay the same across a copy or a resume")
        out[n] = saved[n].to(device=t.device, dtype=t.dtype).clone()
    return out


class ModulePool(GroupPool):
    """The pool interface of ``LocalPool`` over a user's module: members grouped into
    ``FunctionalPopulation``s by fold, batch size and module signature.

    Members whose modules differ in shape (architecture hyperparameters) cannot share a batched
    computation: each shape gets its own population. A module ``vmap`` cannot trace trains its
    members one at a time. Both are logged once and kept in ``notes`` (and ``mode_of``).

    Args:
        model: the module class or builder (see ``build_member``).
        folds: the TensorData each member may train on (a member names its fold by index).
        vmap: False trains every member one at a time (``engine="single"``).
        keys: the names the search space gives; a member's module sees these and the training keys
            only (defaults a study fills in, such as the built-in ``width``, never reach it). None:
            every key.
    """

    def __init__(self, model: Any, folds: list, vmap: bool = True, keys: Any = None) -> None:
        super().__init__(folds)
        self.model, self.vmap = model, vmap
        self.keys = None if keys is None else frozenset(keys) | frozenset(OPTIM_KEYS)
        self.modes: dict[Hashable, tuple[str, str | None]] = {}  # kept after a member leaves
        self.shapes: set[tuple] = set()
        self.notes: list[str] = []
        self.largest = 0  # the most members one population held at once
        self._params: dict[tuple, float] = {}  # architecture -> trainable parameters

    def _note(self, text: str) -> None:
        import logging

        if text not in self.notes:
            self.notes.append(text)
            logging.getLogger("shoal").info("model: %s", text)

    def model_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """What a member's module and training see of ``config`` (see ``keys``)."""
        return dict(config) if self.keys is None else {k: v for k, v in config.items() if k in self.keys}

    def add(self, key: Hashable, config: Mapping[str, Any], seed: int, fold: int, epochs: int,
            start: Mapping[str, Any] | None = None) -> None:
        try:
            config = self.model_config(config)
            data = self.folds[fold]
            module = build_member(self.model, config, seed, data)
            sig = signature(module)
            bs = int(optim_config(config)["batch_size"])
            gk = (fold, bs, sig)
            if gk not in self.populations:
                self.populations[gk] = FunctionalPopulation(self.model, data, bs, vmap=self.vmap)
            pop = self.populations[gk]
            pop.add(key, config, seed, data, epochs, start, module=module)
            self.where[key] = gk
            self.modes[key] = ("vmap", None) if pop.vmapped else ("sequential", pop.reason)
            self.largest = max(self.largest, len(pop))
            if pop.reason is not None:
                self._note(f"one member at a time: {pop.reason}")
            self.shapes.add(sig)
            if len(self.shapes) == 2:
                self._note("members differ in parameter shapes (architecture hyperparameters): each shape "
                           "trains as its own population")
        except Exception as exc:  # reported at the next epoch, like any failure of this member
            self.failed[key] = f"{type(exc).__name__}: {exc}"

    def mode_of(self, key: Hashable) -> tuple[str, str | None]:
        """("vmap", None) or ("sequential", why) for a member added to the pool (None if its add failed)."""
        return self.modes.get(key, ("vmap", None))

    def state_dict(self, key: Hashable) -> dict[str, torch.Tensor]:
        return self.populations[self.where[key]].state_dict(key)

    def static_measures(self, config: Mapping[str, Any]) -> dict[str, float]:
        """What the configuration alone decides of the user's module, for objectives and limits
        before training: its trainable parameters (one module built per architecture)."""
        config = self.model_config(config)
        arch = tuple(sorted((k, repr(v)) for k, v in config.items() if k not in OPTIM_KEYS))
        if arch not in self._params:
            try:
                module = build_member(self.model, config, 0, self.folds[0])
            except Exception:  # the member's add reports why
                return {}
            self._params[arch] = float(sum(p.numel() for p in module.parameters() if p.requires_grad))
        return {"params": self._params[arch]}


class ModulePlacer:
    """Where members of a user's module train among worker processes (``ProcessPool(place=...)``):
    members whose modules batch together go to one worker, members of a module ``vmap`` cannot
    trace spread over the workers (one at a time in each: the processes then run side by side).

    Each architecture (fold, batch size, the module's own arguments) is built and probed once, here.
    """

    def __init__(self, model: Any, folds: list, vmap: bool = True, keys: Any = None) -> None:
        self.pool = ModulePool(model, folds, vmap, keys)  # its config filter, notes and modes; no members
        self.groups: dict[tuple, str | None] = {}  # architecture -> why it cannot batch (None: it can)

    @property
    def notes(self) -> list[str]:
        return self.pool.notes

    def __call__(self, key: Hashable, config: Mapping[str, Any], fold: int) -> Hashable | None:
        pool = self.pool
        config = pool.model_config(config)
        arch = (fold, int(optim_config(config)["batch_size"]),
                tuple(sorted((k, repr(v)) for k, v in config.items() if k not in OPTIM_KEYS)))
        if arch not in self.groups:
            why = None if pool.vmap else "asked for one member at a time"
            try:
                module = build_member(pool.model, config, 0, pool.folds[fold])
                pool.shapes.add(signature(module))
                if why is None:
                    why = vmap_problem(module, pool.folds[fold])
            except Exception:  # a module that cannot be built: its worker reports why
                pass
            self.groups[arch] = why
            if why is not None:
                pool._note(f"one member at a time, spread over the worker processes: {why}")
            if len(pool.shapes) == 2:
                pool._note("members differ in parameter shapes (architecture hyperparameters): each shape "
                           "trains as its own population, in its own worker")
        why = self.groups[arch]
        pool.modes[key] = ("vmap", None) if why is None else ("sequential", why)
        return arch if why is None else None

    def mode_of(self, key: Hashable) -> tuple[str, str | None]:
        return self.pool.mode_of(key)
