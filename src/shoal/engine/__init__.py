"""Engines that train: ``single`` (one nn.Module, the reference) and ``population`` (K at once).

Importing this subpackage imports torch; ``import shoal`` does not.
"""

from shoal.engine._config import DEFAULTS, FAMILIES, METRICS, epoch_order, hidden_widths, lr_at, normalize
from shoal.engine._models import build_model, init_weight
from shoal.engine._single import EpochRecord, History, TensorData, evaluate, resolve_device, train

__all__ = [
    "DEFAULTS",
    "FAMILIES",
    "METRICS",
    "EpochRecord",
    "History",
    "TensorData",
    "build_model",
    "epoch_order",
    "evaluate",
    "hidden_widths",
    "init_weight",
    "lr_at",
    "normalize",
    "resolve_device",
    "train",
]

from shoal.engine._packer import PeakMemory, capacity, group_key, member_bytes  # noqa: E402
from shoal.engine._population import Population  # noqa: E402

__all__ += ["PeakMemory", "Population", "capacity", "group_key", "member_bytes"]
