"""The single-model engine: one nn.Module, torch.optim, in-memory batches.

It is the reference the population engine is tested against, and the engine of panda mode.
Batches are sliced from tensors already on the device (a DataLoader was measured 1.3x slower
on a small MLP).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from shoal._errors import ConfigError, Diverged
from shoal.engine._config import batch_bounds, divergence_reason, diverged, dropout_rng, epoch_order, lr_at, normalize
from shoal.engine._models import build_model, set_dropout_rng

if TYPE_CHECKING:
    from torch import nn

__all__ = ["EpochRecord", "History", "TensorData", "evaluate", "evaluate_scores", "resolve_device", "train"]

EVAL_CHUNK = 4096


def resolve_device(device: str | None = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"Unknown device {device!r}. Use auto, cpu, cuda or cuda:N.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"The device {device!r} was asked for, but this machine has no CUDA GPU. Use cpu.")
    return dev


@dataclass
class TensorData:
    """Training and validation tensors on one device, in the shape the model family takes."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    input_shape: tuple
    n_outputs: int
    task: str
    y_scale: tuple | None = None  # regression: the std each target was divided by (for val_mse)

    @classmethod
    def from_prepared(cls, prepared: Any, device: str | torch.device = "cpu") -> TensorData:
        """From ``shoal.data.Prepared`` (or anything with X_train, y_train, X_val, y_val, ...)."""
        dev = torch.device(device)
        cls_task = prepared.task == "classification"

        def own(a: np.ndarray, dtype) -> torch.Tensor:
            a = np.ascontiguousarray(a, dtype=dtype)
            if not a.flags.writeable:  # shoal.data hands out read-only views; torch wants its own
                a = a.copy()
            return torch.from_numpy(a).to(dev)

        def tx(a: np.ndarray) -> torch.Tensor:
            return own(a, np.float32)

        def ty(a: np.ndarray) -> torch.Tensor:
            return own(a, np.int64 if cls_task else np.float32)

        return cls(
            tx(prepared.X_train), ty(prepared.y_train), tx(prepared.X_val), ty(prepared.y_val),
            tuple(prepared.input_shape), int(prepared.n_outputs), prepared.task,
            _scale_of(getattr(prepared, "y_std", None)),
        )

    @property
    def n_train(self) -> int:
        return int(self.X_train.shape[0])


@dataclass
class EpochRecord:
    epoch: int  # 1-based: the number of epochs completed
    train_loss: float
    train_acc: float | None
    val_loss: float
    val_acc: float | None
    lr: float
    seconds: float
    # classification: balanced accuracy and macro F1; regression: R² and MSE in the target's units
    val_balanced_acc: float | None = None
    val_f1: float | None = None
    val_r2: float | None = None
    val_mse: float | None = None

    def metrics(self) -> dict[str, float | None]:
        return {"train_loss": self.train_loss, "train_acc": self.train_acc, "val_loss": self.val_loss,
                "val_acc": self.val_acc, "val_balanced_acc": self.val_balanced_acc, "val_f1": self.val_f1,
                "val_r2": self.val_r2, "val_mse": self.val_mse}


@dataclass
class History:
    epochs: list[EpochRecord] = field(default_factory=list)
    stopped_early: bool = False

    def curve(self, name: str) -> list:
        return [getattr(r, name) for r in self.epochs]

    @property
    def last(self) -> EpochRecord:
        return self.epochs[-1]


def data_loss(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    if task == "classification":
        return F.cross_entropy(out, y)
    return F.mse_loss(out.reshape(y.shape), y)


def _scale_of(y_std: Any) -> tuple | None:
    return None if y_std is None else tuple(float(v) for v in np.asarray(y_std).reshape(-1))


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, task: str) -> tuple[float, float | None]:
    """Mean loss and accuracy (None for regression) in eval mode."""
    loss, acc, _ = evaluate_scores(model, X, y, task)
    return loss, acc


def evaluate_scores(model: nn.Module, X: torch.Tensor, y: torch.Tensor, task: str, n_classes: int | None = None,
                    y_scale: tuple | None = None) -> tuple[float, float | None, dict[str, float]]:
    """``evaluate`` plus the scores of ``shoal.engine._scores`` (balanced accuracy and F1, or R² and MSE)."""
    from shoal.engine._scores import classification_scores, regression_scores

    model.eval()
    total, correct = 0.0, 0
    outs = []
    with torch.no_grad():
        for i in range(0, X.shape[0], EVAL_CHUNK):
            out = model(X[i : i + EVAL_CHUNK])
            yy = y[i : i + EVAL_CHUNK]
            total += float(data_loss(out, yy, task)) * yy.shape[0]
            if task == "classification":
                pred = out.argmax(1)
                correct += int((pred == yy).sum())
                outs.append(pred)
            else:
                outs.append(out.reshape(yy.shape[0], -1))
    n = X.shape[0]
    if not outs:
        return math.nan, None, {}
    pred = torch.cat(outs).cpu().numpy()
    if task == "classification":
        scores = classification_scores(y.cpu().numpy(), pred, int(n_classes or max(int(y.max()), int(pred.max())) + 1))
        return total / n, correct / n, scores
    return total / n, None, regression_scores(y.cpu().numpy().reshape(n, -1), pred, y_scale)


def make_optimizer(model: nn.Module, config: Mapping[str, Any]) -> torch.optim.Optimizer:
    """Weights (linear and conv) get L2 weight decay; biases and batch-norm parameters do not."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if name.endswith("weight") and p.dim() > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": float(config["weight_decay"])},
              {"params": no_decay, "weight_decay": 0.0}]
    lr, opt = float(config["lr"]), config["optimizer"]
    if opt == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.0)
    if opt == "momentum":
        return torch.optim.SGD(groups, lr=lr, momentum=float(config["momentum"]))
    if opt == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=float(config["rmsprop_alpha"]), eps=float(config["eps"]))
    return torch.optim.Adam(groups, lr=lr, betas=(float(config["beta1"]), float(config["beta2"])),
                            eps=float(config["eps"]))


def l1_penalty(model: nn.Module) -> torch.Tensor:
    return sum(p.abs().sum() for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1)


def train(
    config: Mapping[str, Any],
    data: TensorData,
    *,
    family: str = "mlp",
    epochs: int = 10,
    seed: int = 0,
    on_epoch: Callable[[EpochRecord], bool | None] | None = None,
    patience: int | None = None,
) -> History:
    """Train one model; return its per-epoch history.

    Args:
        config: hyperparameters (missing keys take ``DEFAULTS``).
        data: tensors on the device to train on.
        family: "mlp" or "cnn".
        epochs: epochs to train.
        seed: seeds the initial weights, each epoch's data order and the dropout masks.
        on_epoch: called after each epoch; returning True stops training (pruning).
        patience: stop when the validation loss has not improved for this many epochs.

    Raises:
        Diverged: the training or validation loss became NaN or infinite.

    Example:
        >>> from shoal.data import load_dataset, train_val_split, prepare   # doctest: +SKIP
        >>> ds = load_dataset("digits"); p = prepare(ds, train_val_split(ds))  # doctest: +SKIP
        >>> train({"lr": 0.01}, TensorData.from_prepared(p), epochs=3).last.val_acc  # doctest: +SKIP
    """
    cfg = normalize(config)
    torch.set_flush_denormal(True)  # subnormals make sqrt ~30x slower on CPU
    model = build_model(family, data.input_shape, data.n_outputs, cfg, seed).to(data.X_train.device)
    optimizer = make_optimizer(model, cfg)
    l1 = float(cfg["l1"])
    bs, n = int(cfg["batch_size"]), data.n_train
    history = History()
    best, since_best = math.inf, 0
    is_cls = data.task == "classification"
    for epoch in range(epochs):
        start = time.perf_counter()
        lr = lr_at(cfg, epoch, epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        order = torch.from_numpy(epoch_order(seed, epoch, n)).to(data.X_train.device)
        set_dropout_rng(model, dropout_rng(seed, epoch))
        model.train()
        loss_sum = torch.zeros((), device=data.X_train.device)
        correct = torch.zeros((), device=data.X_train.device, dtype=torch.long)
        for lo, hi in batch_bounds(n, bs):
            idx = order[lo:hi]
            xb, yb = data.X_train[idx], data.y_train[idx]
            out = model(xb)
            loss = data_loss(out, yb, data.task)
            total = loss + l1 * l1_penalty(model) if l1 > 0 else loss
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            loss_sum += loss.detach() * idx.shape[0]
            if is_cls:
                correct += (out.detach().argmax(1) == yb).sum()
        train_loss = float(loss_sum) / n
        val_loss, val_acc, scores = evaluate_scores(model, data.X_val, data.y_val, data.task, data.n_outputs,
                                                    data.y_scale)
        record = EpochRecord(
            epoch=epoch + 1, train_loss=train_loss, train_acc=(int(correct) / n if is_cls else None),
            val_loss=val_loss, val_acc=val_acc, lr=lr, seconds=time.perf_counter() - start, **scores,
        )
        if diverged(train_loss, val_loss):
            raise Diverged(divergence_reason(epoch + 1, train_loss, val_loss, lr), record)
        history.epochs.append(record)
        if on_epoch is not None and on_epoch(record):
            history.stopped_early = True
            break
        if patience is not None:
            if val_loss < best - 1e-12:
                best, since_best = val_loss, 0
            else:
                since_best += 1
                if since_best >= patience:
                    history.stopped_early = True
                    break
    return history
