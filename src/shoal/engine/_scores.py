"""Validation scores beyond loss and accuracy, from predictions (every engine uses these).

Classification: balanced accuracy and macro F1, defined as scikit-learn's ``balanced_accuracy_score``
and ``f1_score(average="macro")`` (a class never predicted, or never present, scores F1 0).
Regression: R² (averaged over targets, as ``r2_score``) and the mean squared error in the
target's own units (the engines train on standardized targets).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["SCORE_NAMES", "classification_scores", "regression_scores"]

SCORE_NAMES = ("val_balanced_acc", "val_f1", "val_r2", "val_mse")


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``[n_classes, n_classes]`` counts: row = true class, column = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, float]:
    """Balanced accuracy (mean recall over the classes present) and macro F1.

    Example:
        >>> s = classification_scores([0, 0, 0, 1], [0, 0, 0, 0], 2)
        >>> round(s["val_balanced_acc"], 3), round(s["val_f1"], 3)
        (0.5, 0.429)
    """
    c = confusion(y_true, y_pred, n_classes).astype(np.float64)
    tp = np.diag(c)
    support = c.sum(1)
    predicted = c.sum(0)
    present = support > 0
    bacc = float(np.mean(tp[present] / support[present])) if present.any() else 0.0
    labels = present | (predicted > 0)
    denom = support + predicted  # 2 tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"val_balanced_acc": bacc, "val_f1": float(np.mean(f1[labels])) if labels.any() else 0.0}


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray, y_scale: Sequence[float] | None = None) -> dict[str, float]:
    """R² averaged over targets and the MSE in the target's units (``y_scale``: the standard
    deviation each standardized target was divided by; None: the values are in their own units).

    Example:
        >>> s = regression_scores([[0.0], [2.0]], [[0.5], [1.5]], y_scale=[2.0])
        >>> s["val_r2"], s["val_mse"]
        (0.75, 1.0)
    """
    y = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(y.shape)
    sse = ((p - y) ** 2).sum(0)
    sst = ((y - y.mean(0)) ** 2).sum(0)
    # A constant target: 1 for a perfect fit, else 0 (scikit-learn's force_finite)
    r2 = np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), np.where(sse == 0, 1.0, 0.0))
    scale = np.ones(y.shape[1]) if y_scale is None else np.asarray(y_scale, dtype=np.float64).reshape(-1)
    mse = float(np.mean(sse / max(len(y), 1) * scale**2))
    return {"val_r2": float(np.mean(r2)), "val_mse": mse}
