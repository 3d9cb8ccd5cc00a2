"""The learning-rate range test: train a fresh model for a few hundred steps while the learning rate
rises exponentially, record the (smoothed) loss, and suggest the rate where it falls fastest.

Suggestion: the learning rate at the steepest descent of the smoothed loss (against log lr), before
its minimum. Also reported: the rate at the minimum divided by 10, the other common rule.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from shoal._errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["LRFindResult", "lr_find", "suggest"]

KEEP_RESULTS = 10  # lr-find results kept in the study's "lr_find" attribute


@dataclass
class LRFindResult:
    """What ``lr_find`` returns.

    Attributes:
        lrs, losses, smoothed: per step, the learning rate, the batch loss and its smoothed value.
        suggestion: the suggested learning rate (the steepest descent).
        steepest: the learning rate where the smoothed loss falls fastest.
        min_loss_lr: the learning rate at the lowest smoothed loss (a tenth of it is a safe start).
        plot: the plot file written (HTML with plotly), or None.
        study: the study the result is stored in.
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    steepest: float
    min_loss_lr: float
    plot: Path | None
    study: str

    def to_dict(self) -> dict[str, Any]:
        return {"lrs": self.lrs, "losses": self.losses, "smoothed": self.smoothed, "suggestion": self.suggestion,
                "steepest": self.steepest, "min_loss_lr": self.min_loss_lr}


def suggest(lrs: list[float], smoothed: list[float]) -> tuple[float, float]:
    """(lr at the steepest descent before the minimum, lr at the minimum) of a smoothed loss curve."""
    import numpy as np

    y = np.asarray(smoothed, dtype=float)
    x = np.log10(np.asarray(lrs, dtype=float))
    lo = int(np.argmin(y))
    skip = min(len(y) // 10, 10)  # the first steps barely move the loss; their slope is noise
    if lo - skip < 2:
        return float(lrs[lo]), float(lrs[lo])
    grad = np.gradient(y[: lo + 1], x[: lo + 1])
    steep = skip + int(np.argmin(grad[skip:]))
    return float(lrs[steep]), float(lrs[lo])


def lr_find(
    *,
    data: str = "digits",
    preset: str = "mlp",
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    steps: int = 200,
    min_lr: float = 1e-6,
    max_lr: float = 10.0,
    smooth: float = 0.98,
    storage: str | None = None,
    study: str | None = None,
    device: str = "auto",
    val_fraction: float = 0.2,
    target: str | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> LRFindResult:
    """Run a learning-rate range test on a fresh model of ``preset`` with ``params``.

    Stops early once the smoothed loss passes four times its minimum. The result is stored in the
    study's ``lr_find`` attribute (last 10) and drawn to ``out`` (default: next to the checkpoints,
    ``<storage stem>.checkpoints/<study>/lr-find.html``) when plotly is installed.

    Example:
        >>> shoal.panda.lr_find(data="digits", params={"optimizer": "sgd"}, storage="panda.db").suggestion  # doctest: +SKIP
    """
    import numpy as np
    import torch

    from shoal.engine._config import batch_bounds, dropout_rng, epoch_order, normalize
    from shoal.engine._models import build_model, set_dropout_rng
    from shoal.engine._single import data_loss, l1_penalty, make_optimizer
    from shoal.panda._babysit import _experiment, _study_name, check_params
    from shoal.panda._checkpoint import checkpoint_root
    from shoal.study._builtin import prepare_data
    from shoal.study._experiment import resolve_storage
    from shoal.study._tune import open_study

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 20:
        raise ConfigError(f"The 'steps' setting of lr-find must be an integer >= 20. Got {steps!r} instead.")
    for name, v in (("min_lr", min_lr), ("max_lr", max_lr)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ConfigError(f"The '{name}' setting must be a positive number. Got {v!r} instead.")
    if min_lr >= max_lr:
        raise ConfigError(f"The 'min_lr' setting must be below 'max_lr'. Got {min_lr!r} >= {max_lr!r}.")
    if not (0.0 <= smooth < 1.0):
        raise ConfigError(f"The 'smooth' setting must be in the range [0, 1). Got {smooth!r} instead.")
    exp = _experiment({"data": data, "preset": preset, "seed": seed, "device": device,
                       "val_fraction": val_fraction, "target": target, "study": study, "storage": storage})
    cfg = normalize(check_params(params))
    name = _study_name(exp)
    td = prepare_data(exp).folds[0]

    torch.set_flush_denormal(True)
    dev = td.X_train.device
    model = build_model(preset, td.input_shape, td.n_outputs, cfg, seed).to(dev)
    opt = make_optimizer(model, cfg)
    l1 = float(cfg["l1"])
    n = td.n_train
    bounds = batch_bounds(n, int(cfg["batch_size"]))
    ratio = (max_lr / min_lr) ** (1.0 / (steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    avg, best = 0.0, math.inf
    model.train()
    epoch, order = -1, None
    for i in range(steps):
        if i % len(bounds) == 0:
            epoch += 1
            order = torch.from_numpy(epoch_order(seed, epoch, n)).to(dev)
            set_dropout_rng(model, dropout_rng(seed, epoch))
        lr = min_lr * ratio**i
        for g in opt.param_groups:
            g["lr"] = lr
        lo, hi = bounds[i % len(bounds)]
        idx = order[lo:hi]
        out_ = model(td.X_train[idx])
        loss = data_loss(out_, td.y_train[idx], td.task)
        total = loss + l1 * l1_penalty(model) if l1 > 0 else loss
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        v = float(loss.detach())
        if not math.isfinite(v):
            break
        avg = smooth * avg + (1 - smooth) * v
        s = avg / (1 - smooth ** (i + 1))
        lrs.append(lr)
        losses.append(v)
        smoothed.append(s)
        best = min(best, s)
        if i > 10 and s > 4 * best:
            break
    if len(lrs) < 5:
        raise ConfigError(f"The loss diverged within {len(lrs)} steps from lr {min_lr:g}; use a smaller --min-lr.")
    steepest, at_min = suggest(lrs, smoothed)
    plot = _plot(lrs, losses, smoothed, steepest, at_min,
                 Path(out) if out else checkpoint_root(storage) / name / "lr-find.html")
    result = LRFindResult(lrs, losses, smoothed, steepest, steepest, at_min, plot, name)
    st = open_study(resolve_storage(storage), name, exp.direction)
    kept = list(st.user_attrs.get("lr_find", []))[-(KEEP_RESULTS - 1):]
    st.set_user_attr("lr_find", kept + [{**result.to_dict(), "config": cfg, "seed": seed, "time": time.time(),
                                         "data": data, "preset": preset}])
    if progress:
        _print(result, console)
    return result


def _plot(lrs, losses, smoothed, steepest, at_min, path: Path) -> Path | None:
    try:
        import plotly.graph_objects as go
    except ImportError:  # the terminal chart is shown instead
        return None
    fig = go.Figure()
    fig.add_scatter(x=lrs, y=losses, mode="lines", name="batch loss", line={"color": "lightgray"})
    fig.add_scatter(x=lrs, y=smoothed, mode="lines", name="smoothed loss")
    for x, label in ((steepest, "steepest descent (suggested)"), (at_min / 10, "minimum / 10")):
        fig.add_vline(x=x, line_dash="dash", annotation_text=f"{label}: {x:.2e}")
    fig.update_xaxes(type="log", title="learning rate")
    fig.update_yaxes(title="training loss")
    fig.update_layout(title="learning-rate range test")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(path), include_plotlyjs=True)  # self-contained: opens without a network
    return path


def _print(result: LRFindResult, console: Console | None) -> None:
    import math as _m

    from rich.console import Console as _Console
    from rich.text import Text

    from shoal.panda._view import line_chart

    console = console or _Console()
    s = result.smoothed
    width = 60
    picked = [s[round(i * (len(s) - 1) / (width - 1))] for i in range(min(width, len(s)))]
    text = Text("smoothed loss against learning rate (log scale)\n", style="bold")
    mark = 1 + round(_m.log(result.steepest / result.lrs[0]) / _m.log(result.lrs[-1] / result.lrs[0]) * (len(picked) - 1))
    for label, cells in line_chart({"train": picked}, width=width, height=10, marks=[mark]):
        text.append(f"{label:>8} │", style="dim")
        for ch, style in cells:
            text.append(ch, style=style or None)
        text.append("\n")
    text.append(f"{'':>9} {result.lrs[0]:.1e}{'':>{max(width - 14, 1)}}{result.lrs[-1]:.1e}\n", style="dim")
    console.print(text)
    console.print(f"suggested lr [green]{result.suggestion:.2e}[/] (steepest descent, ▲); "
                  f"minimum at {result.min_loss_lr:.2e} (a tenth: {result.min_loss_lr / 10:.2e})"
                  + (f"; plot: {result.plot}" if result.plot else ""))
