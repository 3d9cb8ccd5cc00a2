"""Search spaces: parameters on the right scale, conditions, presets, and their Optuna form."""

from shoal.space._params import Categorical, Fixed, Float, Int, Param
from shoal.space._presets import PRESETS, cnn, mlp, preset
from shoal.space._space import Space, parse_override, parse_value

__all__ = [
    "PRESETS",
    "Categorical",
    "Fixed",
    "Float",
    "Int",
    "Param",
    "Space",
    "cnn",
    "mlp",
    "parse_override",
    "parse_value",
    "preset",
]
