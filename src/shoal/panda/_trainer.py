"""The step-level trainer of panda mode: engine ``train()``'s arithmetic, one step at a time, with a
learning rate that can be changed between any two steps and a state that can be saved at any step.

Without events, a run computes exactly what ``shoal.engine.train`` computes for the same config and
seed (tested): same initial weights, optimizer, per-epoch data order and dropout stream, same loss
accumulation and evaluation.

The learning rate is ``schedule(epoch) x scale``. ``set_lr(x)`` makes it ``x`` at once by choosing the
scale; the schedule's decay (step, exponential, cosine) then continues relative to it.
``multiply_lr(f)`` and reduce-on-plateau multiply the scale.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import torch

from shoal._errors import ConfigError, Diverged
from shoal.engine._config import batch_bounds, divergence_reason, diverged, dropout_rng, epoch_order, lr_at, normalize
from shoal.engine._models import build_model, set_dropout_rng
from shoal.engine._single import EpochRecord, History, data_loss, evaluate, l1_penalty, make_optimizer
from shoal.panda._control import COMMANDS

if TYPE_CHECKING:
    from shoal.engine import TensorData

__all__ = ["Plateau", "Trainer"]

CHECKPOINT_FORMAT = 1


@dataclass
class Plateau:
    """Reduce-on-plateau: after ``patience`` epochs without a lower validation loss, multiply the
    learning rate by ``factor`` (each reduction is an event)."""

    patience: int
    factor: float
    best: float = math.inf
    wait: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 1:
            raise ConfigError(f"The plateau patience must be an integer >= 1. Got {self.patience!r} instead.")
        if not (isinstance(self.factor, (int, float)) and 0.0 < self.factor < 1.0):
            raise ConfigError(f"The plateau factor must be a number in the range (0, 1). Got {self.factor!r} instead.")

    @classmethod
    def parse(cls, text: str | tuple | Plateau | None) -> Plateau | None:
        """``"3,0.5"`` or ``(3, 0.5)`` -> Plateau(3, 0.5)."""
        if text is None or isinstance(text, Plateau):
            return text
        parts = text.split(",") if isinstance(text, str) else list(text)
        try:
            patience, factor = int(str(parts[0]).strip()), float(str(parts[1]).strip())
        except (ValueError, IndexError):
            raise ConfigError(f"The plateau setting must be 'patience,factor' such as 3,0.5. Got {text!r} instead.") from None
        if len(parts) != 2:
            raise ConfigError(f"The plateau setting must be 'patience,factor' such as 3,0.5. Got {text!r} instead.")
        return cls(patience, factor)


class Trainer:
    """One model, trained step by step.

    Args:
        config: hyperparameters (missing keys take ``DEFAULTS``).
        data: tensors on the device to train on.
        family: "mlp" or "cnn".
        epochs: epochs to train in all.
        seed: seeds the initial weights, each epoch's data order and the dropout masks.
        plateau: reduce-on-plateau on the validation loss, or None.
        model: the user's ``nn.Module`` class or builder instead of the preset (see
            ``shoal.engine._functional.build_member``); it gets the values of ``model_keys`` (None:
            every key of ``config``) and the data's shape. Training is the same loop.

    Example:
        >>> t = Trainer({"lr": 0.01}, data, epochs=3)  # doctest: +SKIP
        >>> t.run(); t.history().last.val_acc  # doctest: +SKIP
    """

    def __init__(self, config: Mapping[str, Any], data: TensorData, *, family: str = "mlp", epochs: int = 10,
                 seed: int = 0, plateau: Plateau | None = None, model: Any = None,
                 model_keys: Any = None) -> None:
        self.cfg = normalize(config)
        self.data = data
        self.family = family
        self.epochs = int(epochs)
        self.seed = int(seed)
        self.plateau = plateau
        torch.set_flush_denormal(True)  # subnormals make sqrt ~30x slower on CPU
        if model is None:
            self.model = build_model(family, data.input_shape, data.n_outputs, self.cfg, self.seed).to(data.X_train.device)
        else:
            from shoal.engine._functional import OPTIM_KEYS, build_member

            keys = None if model_keys is None else set(model_keys) | set(OPTIM_KEYS)
            self.model = build_member(model, {k: v for k, v in self.cfg.items() if keys is None or k in keys},
                                      self.seed, data)
        self.optimizer = make_optimizer(self.model, self.cfg)
        self.epoch = 0  # epochs completed
        self.step = 0  # steps done in the running epoch
        self.scale = 1.0
        self.paused = False
        self.stopped = False
        self.records: list[EpochRecord] = []
        self.events: list[dict[str, Any]] = []
        self.applied: list[str] = []  # ids of control commands already applied
        # Events to apply again at their (epoch, step) after a resume; their ids are in ``applied``.
        self.replay: list[dict[str, Any]] = []
        self.on_checkpoint: Callable[[Trainer], str] | None = None
        self.last_lr = self.lr
        self._partial: dict[str, Any] | None = None
        self._loss_sum = self._correct = None
        self._rng: np.random.Generator | None = None
        self._seconds = 0.0

    # ------------------------------------------------------------------ state
    @property
    def lr(self) -> float:
        """The learning rate the next step uses."""
        return self.base_lr() * self.scale

    def base_lr(self) -> float:
        """The configured learning rate at this epoch (the schedule's), before commands scale it."""
        return lr_at(self.cfg, self.epoch, self.epochs)

    @property
    def steps_per_epoch(self) -> int:
        return len(batch_bounds(self.data.n_train, int(self.cfg["batch_size"])))

    @property
    def done(self) -> bool:
        return self.epoch >= self.epochs

    def history(self) -> History:
        return History(list(self.records), stopped_early=self.stopped and not self.done)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to go on exactly from here: weights, optimizer moments, lr scale, data
        position (epoch, step), the dropout stream, the partial sums of a running epoch, curves, events."""
        partial = None
        if self.step > 0:
            partial = {"loss_sum": self._loss_sum.detach().cpu().clone(), "correct": self._correct.detach().cpu().clone(),
                       "seconds": self._seconds, "dropout": self._rng.bit_generator.state}
        return {
            "format": CHECKPOINT_FORMAT, "config": dict(self.cfg), "family": self.family, "epochs": self.epochs,
            "seed": self.seed, "epoch": self.epoch, "step": self.step, "scale": self.scale,
            "records": [asdict(r) for r in self.records], "events": [dict(e) for e in self.events],
            "applied": list(self.applied),
            "plateau": None if self.plateau is None else {"best": self.plateau.best, "wait": self.plateau.wait},
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "partial": partial,
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``. The optimizer keeps its moments but takes its hyperparameters from
        this trainer's config (a fork may change weight decay, betas, momentum)."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"This checkpoint has format {state.get('format')!r}; this shoal reads format {CHECKPOINT_FORMAT}.")
        dev = self.data.X_train.device
        self.model.load_state_dict(state["model"])
        hyper = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for group, h in zip(self.optimizer.param_groups, hyper):
            group.update(h)
        self.epoch, self.step, self.scale = int(state["epoch"]), int(state["step"]), float(state["scale"])
        self.records = [EpochRecord(**r) for r in state["records"]]
        self.events = [dict(e) for e in state["events"]]
        self.applied = list(state["applied"])
        if self.plateau is not None and state.get("plateau"):
            self.plateau.best, self.plateau.wait = state["plateau"]["best"], state["plateau"]["wait"]
        p = state.get("partial")
        if p is not None:
            self._partial = {"loss_sum": p["loss_sum"].to(dev), "correct": p["correct"].to(dev),
                             "seconds": float(p["seconds"]), "dropout": p["dropout"]}
        torch.set_rng_state(state["torch_rng"])
        self.last_lr = self.records[-1].lr if self.records else self.lr

    # ------------------------------------------------------------------ events
    def event(self, what: str, value: Any = None, **extra: Any) -> dict[str, Any]:
        """Record an event at the current position: ``epoch`` is the 1-based epoch it takes effect in,
        ``step`` the batch (0-based) of that epoch it comes before."""
        e = {"what": what, "value": value, "lr": self.lr, "epoch": self.epoch + 1, "step": self.step,
             "time": time.time(), **extra}
        self.events.append(e)
        return e

    def apply(self, what: str, value: float | None = None, **extra: Any) -> dict[str, Any]:
        """Apply one command (see ``COMMANDS``) before the next step and record it."""
        if what not in COMMANDS:
            raise ConfigError(f"Unknown command {what!r}. Commands: {', '.join(COMMANDS)}.")
        if COMMANDS[what]:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"The '{what}' value must be a positive number. Got {value!r} instead.")
            value = float(value)
        if what == "set_lr":
            self.scale = value / self.base_lr()
        elif what == "multiply_lr":
            self.scale *= value
        elif what == "pause":
            self.paused = True
        elif what == "resume":
            self.paused = False
        elif what == "stop":
            self.stopped = True
        elif what == "checkpoint" and self.on_checkpoint is not None:
            extra["file"] = self.on_checkpoint(self)
        return self.event(what, value, **extra)

    def _replay_due(self) -> None:
        while self.replay and (self.replay[0]["epoch"], self.replay[0]["step"]) <= (self.epoch + 1, self.step):
            e = self.replay.pop(0)
            if e["what"] == "set_lr":
                self.scale = float(e["value"]) / self.base_lr()
            elif e["what"] == "multiply_lr":
                self.scale *= float(e["value"])
            self.events.append(dict(e))

    # ------------------------------------------------------------------ training
    def run(self, *, control: Callable[[Trainer], None] | None = None,
            on_epoch: Callable[[EpochRecord], bool | None] | None = None) -> History:
        """Train until ``epochs`` are done or a stop.

        Args:
            control: called before every step; it may apply commands (and block while paused).
                Time spent in it does not count in the epoch's seconds.
            on_epoch: called after each epoch; returning True stops.

        Raises:
            Diverged: the training or validation loss became NaN, infinite or exploded.
        """
        data = self.data
        dev = data.X_train.device
        n, is_cls = data.n_train, data.task == "classification"
        l1 = float(self.cfg["l1"])
        while not self.done and not self.stopped:
            start = time.perf_counter()
            bounds = batch_bounds(n, int(self.cfg["batch_size"]))
            order = torch.from_numpy(epoch_order(self.seed, self.epoch, n)).to(dev)
            self._rng = dropout_rng(self.seed, self.epoch)
            if self._partial is not None:
                self._loss_sum, self._correct = self._partial["loss_sum"], self._partial["correct"]
                self._rng.bit_generator.state = self._partial["dropout"]
                before = self._partial["seconds"]
                self._partial = None
            else:
                self._loss_sum = torch.zeros((), device=dev)
                self._correct = torch.zeros((), device=dev, dtype=torch.long)
                before = 0.0
            set_dropout_rng(self.model, self._rng)
            self.model.train()
            outside = 0.0
            while self.step < len(bounds):
                self._seconds = before + time.perf_counter() - start - outside
                if self.replay:
                    self._replay_due()
                if control is not None:
                    t = time.perf_counter()
                    control(self)
                    outside += time.perf_counter() - t
                if self.stopped:
                    return self.history()
                lr = self.lr
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                self.last_lr = lr
                lo, hi = bounds[self.step]
                idx = order[lo:hi]
                xb, yb = data.X_train[idx], data.y_train[idx]
                out = self.model(xb)
                loss = data_loss(out, yb, data.task)
                total = loss + l1 * l1_penalty(self.model) if l1 > 0 else loss
                self.optimizer.zero_grad(set_to_none=True)
                total.backward()
                self.optimizer.step()
                self._loss_sum += loss.detach() * idx.shape[0]
                if is_cls:
                    self._correct += (out.detach().argmax(1) == yb).sum()
                self.step += 1
            train_loss = float(self._loss_sum) / n
            val_loss, val_acc = evaluate(self.model, data.X_val, data.y_val, data.task)
            record = EpochRecord(
                epoch=self.epoch + 1, train_loss=train_loss, train_acc=(int(self._correct) / n if is_cls else None),
                val_loss=val_loss, val_acc=val_acc, lr=self.last_lr,
                seconds=before + time.perf_counter() - start - outside,
            )
            if diverged(train_loss, val_loss):
                raise Diverged(divergence_reason(self.epoch + 1, train_loss, val_loss, self.last_lr))
            self.records.append(record)
            self.epoch += 1
            self.step = 0
            self._plateau(val_loss)
            if on_epoch is not None and on_epoch(record):
                self.stopped = True
        return self.history()

    def _plateau(self, val_loss: float) -> None:
        p = self.plateau
        if p is None or self.done:
            return
        if val_loss < p.best - 1e-12:
            p.best, p.wait = val_loss, 0
            return
        p.wait += 1
        if p.wait >= p.patience:
            p.wait = 0
            self.scale *= p.factor
            self.event("plateau", p.factor, reason=f"validation loss not below {p.best:.4g} for {p.patience} epochs")
