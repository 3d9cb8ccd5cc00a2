"""Search-space parameters: what may vary, on which scale, under which condition."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from shoal._errors import ConfigError

if TYPE_CHECKING:
    import optuna

__all__ = ["Categorical", "Fixed", "Float", "Int", "Param"]


def _check_condition(name: str, when: Mapping[str, Any] | None) -> dict[str, tuple]:
    if not when:
        return {}
    out = {}
    for key, allowed in when.items():
        if isinstance(allowed, (list, tuple, set, frozenset)):
            out[key] = tuple(allowed)
        else:
            out[key] = (allowed,)
        if not out[key]:
            raise ConfigError(
                f"The condition of parameter '{name}' on '{key}' lists no value. "
                f"Give at least one value of '{key}' for which '{name}' is active."
            )
    return out


@dataclass(frozen=True)
class Param:
    """Base of every parameter. ``when`` makes it conditional.

    ``when={"optimizer": ["momentum"]}`` means: the parameter exists only in configs whose
    ``optimizer`` is ``"momentum"``; elsewhere it is absent (and never shown to the sampler).
    """

    name: str
    when: Mapping[str, tuple] = field(default_factory=dict, kw_only=True)
    doc: str = field(default="", kw_only=True, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ConfigError(
                f"A parameter name must be a Python identifier such as 'lr'. Got {self.name!r} instead."
            )
        object.__setattr__(self, "when", _check_condition(self.name, self.when))

    def active(self, config: Mapping[str, Any]) -> bool:
        """Whether this parameter exists given the values already chosen in ``config``."""
        return all(key in config and config[key] in allowed for key, allowed in self.when.items())

    # Subclasses implement these.
    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def distribution(self) -> optuna.distributions.BaseDistribution:  # pragma: no cover
        raise NotImplementedError

    def grid(self, points: int) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def narrow(self, **changes: Any) -> Param:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def contains(self, value: Any) -> bool:  # pragma: no cover - abstract
        """Whether ``value`` is one this parameter can take."""
        raise NotImplementedError

    def optuna_params(self, value: Any) -> dict[str, Any]:
        """The Optuna params that make ``suggest`` return ``value`` (the inverse of ``suggest``)."""
        return {self.name: value}

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _condition_text(self) -> str:
        if not self.when:
            return ""
        parts = [f"{k} in {list(v)}" if len(v) > 1 else f"{k}={v[0]}" for k, v in self.when.items()]
        return "  if " + " and ".join(parts)


def _number(name: str, what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"The '{what}' of parameter '{name}' must be a finite number. Got {value!r} instead.")
    return value


@dataclass(frozen=True)
class Float(Param):
    """A float in [low, high], on a linear or log scale.

    ``off`` adds an "off" value (e.g. 0.0 for weight decay): the sampler first decides whether the
    parameter is on (an extra categorical ``<name>_on``), then samples the value on its scale.

    Example:
        >>> Float("lr", 1e-4, 1.0, log=True).describe()
        'lr: float [0.0001, 1] log'
    """

    low: float = 0.0
    high: float = 1.0
    log: bool = False
    step: float | None = None
    off: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        low = _number(self.name, "low", self.low)
        high = _number(self.name, "high", self.high)
        if low >= high:
            raise ConfigError(
                f"The range of parameter '{self.name}' must have low < high. Got low={low!r}, "
                f"high={high!r}. Swap them, or fix the parameter to one value instead."
            )
        if self.log and low <= 0:
            raise ConfigError(
                f"The parameter '{self.name}' is on a log scale, so its low end must be > 0. "
                f"Got low={low!r}. Use a small positive value such as 1e-6, or log=false."
            )
        if self.log and self.step is not None:
            raise ConfigError(f"The parameter '{self.name}' cannot have both log=true and a step.")

    @property
    def switch_name(self) -> str:
        return f"{self.name}_on"

    def distribution(self) -> optuna.distributions.BaseDistribution:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)

    def suggest(self, trial: optuna.trial.BaseTrial) -> float:
        if self.off is not None and not trial.suggest_categorical(self.switch_name, [True, False]):
            return float(self.off)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log, step=self.step)

    def contains(self, value: Any) -> bool:
        if self.off is not None and value == self.off:
            return True
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def optuna_params(self, value: Any) -> dict[str, Any]:
        if self.off is None:
            return {self.name: value}
        if value == self.off:
            return {self.switch_name: False}
        return {self.switch_name: True, self.name: value}

    def grid(self, points: int) -> list:
        if self.step is not None:
            n = int(round((self.high - self.low) / self.step)) + 1
            idx = sorted({round(i * (n - 1) / max(points - 1, 1)) for i in range(points)})
            values = [self.low + i * self.step for i in idx]
        elif self.log:
            a, b = math.log10(self.low), math.log10(self.high)
            values = [10 ** (a + (b - a) * i / max(points - 1, 1)) for i in range(points)]
        else:
            values = [self.low + (self.high - self.low) * i / max(points - 1, 1) for i in range(points)]
        values = [float(f"{v:.6g}") for v in values]
        return values

    def describe(self) -> str:
        scale = " log" if self.log else ""
        step = f" step {self.step:g}" if self.step else ""
        off = f" or off ({self.off:g})" if self.off is not None else ""
        return f"{self.name}: float [{self.low:g}, {self.high:g}]{scale}{step}{off}{self._condition_text()}"


@dataclass(frozen=True)
class Int(Param):
    """An integer in [low, high]: linear, log scale, with a step, or powers of two.

    ``pow2=True`` restricts values to powers of two between low and high (batch size, width); it is
    compiled to an ordered categorical so that the stored value is the value used.

    Example:
        >>> Int("batch_size", 16, 512, pow2=True).values()
        [16, 32, 64, 128, 256, 512]
    """

    low: int = 0
    high: int = 1
    log: bool = False
    step: int = 1
    pow2: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for what, value in (("low", self.low), ("high", self.high), ("step", self.step)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(
                    f"The '{what}' of integer parameter '{self.name}' must be an integer. Got {value!r} instead."
                )
        if self.low >= self.high:
            raise ConfigError(
                f"The range of parameter '{self.name}' must have low < high. Got low={self.low!r}, "
                f"high={self.high!r}. Swap them, or fix the parameter to one value instead."
            )
        if (self.log or self.pow2) and self.low <= 0:
            raise ConfigError(
                f"The parameter '{self.name}' is on a log / power-of-two scale, so its low end must be "
                f">= 1. Got low={self.low!r}."
            )
        if self.step < 1:
            raise ConfigError(f"The step of parameter '{self.name}' must be >= 1. Got {self.step!r} instead.")
        if self.log and self.step != 1:
            raise ConfigError(f"The parameter '{self.name}' cannot have both log=true and a step.")
        if self.pow2 and not self.values():
            raise ConfigError(
                f"The range [{self.low}, {self.high}] of power-of-two parameter '{self.name}' holds "
                "no power of two. Widen it, e.g. low=16, high=512."
            )

    def values(self) -> list[int]:
        """Every allowed value (only practical for pow2 or short ranges)."""
        if self.pow2:
            out, v = [], 1
            while v <= self.high:
                if v >= self.low:
                    out.append(v)
                v *= 2
            return out
        return list(range(self.low, self.high + 1, self.step))

    def distribution(self) -> optuna.distributions.BaseDistribution:
        from optuna.distributions import CategoricalDistribution, IntDistribution

        if self.pow2:
            return CategoricalDistribution(self.values())
        return IntDistribution(self.low, self.high, log=self.log, step=self.step)

    def suggest(self, trial: optuna.trial.BaseTrial) -> int:
        if self.pow2:
            return int(trial.suggest_categorical(self.name, self.values()))
        return trial.suggest_int(self.name, self.low, self.high, log=self.log, step=self.step)

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            return False
        if self.pow2:
            return value & (value - 1) == 0
        return self.log or (value - self.low) % self.step == 0

    def grid(self, points: int) -> list:
        values = self.values() if self.pow2 or (self.high - self.low) // self.step < 64 else None
        if values is not None and len(values) <= points:
            return values
        if values is not None:
            return [values[round(i * (len(values) - 1) / max(points - 1, 1))] for i in range(points)]
        if self.log:
            a, b = math.log(self.low), math.log(self.high)
            return sorted({int(round(math.exp(a + (b - a) * i / max(points - 1, 1)))) for i in range(points)})
        return sorted({self.low + self.step * round(i * (self.high - self.low) / self.step / max(points - 1, 1))
                       for i in range(points)})

    def describe(self) -> str:
        if self.pow2:
            kind = f"int {self.values()}"
        else:
            scale = " log" if self.log else ""
            step = f" step {self.step}" if self.step != 1 else ""
            kind = f"int [{self.low}, {self.high}]{scale}{step}"
        return f"{self.name}: {kind}{self._condition_text()}"


@dataclass(frozen=True)
class Categorical(Param):
    """One of a list of choices (strings, numbers or booleans).

    Example:
        >>> Categorical("optimizer", ["sgd", "adam"]).describe()
        "optimizer: one of ['sgd', 'adam']"
    """

    choices: Sequence[Any] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.choices, (str, bytes)) or not isinstance(self.choices, Sequence):
            raise ConfigError(
                f"The choices of parameter '{self.name}' must be a list. Got {self.choices!r} instead."
            )
        if len(self.choices) == 0:
            raise ConfigError(f"The parameter '{self.name}' needs at least one choice. Got an empty list.")
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ConfigError(f"The choices of parameter '{self.name}' repeat a value: {list(self.choices)!r}.")
        for c in self.choices:
            if c is not None and not isinstance(c, (str, int, float, bool)):
                raise ConfigError(
                    f"The choices of parameter '{self.name}' must be strings, numbers or booleans. "
                    f"Got {c!r} instead."
                )
        object.__setattr__(self, "choices", tuple(self.choices))

    def distribution(self) -> optuna.distributions.BaseDistribution:
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(list(self.choices))

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        if len(self.choices) == 1:
            return self.choices[0]
        return trial.suggest_categorical(self.name, list(self.choices))

    def contains(self, value: Any) -> bool:
        return any(type(c) is type(value) and c == value for c in self.choices)

    def optuna_params(self, value: Any) -> dict[str, Any]:
        return {} if len(self.choices) == 1 else {self.name: value}

    def grid(self, points: int) -> list:
        return list(self.choices)

    def describe(self) -> str:
        return f"{self.name}: one of {list(self.choices)}{self._condition_text()}"


@dataclass(frozen=True)
class Fixed(Param):
    """A parameter held at one value (not searched, but part of every config).

    Example:
        >>> Fixed("epochs_warmup", 2).describe()
        'epochs_warmup: fixed 2'
    """

    value: Any = None

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        return self.value

    def distribution(self) -> optuna.distributions.BaseDistribution:
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution([self.value])

    def contains(self, value: Any) -> bool:
        return type(value) is type(self.value) and value == self.value

    def optuna_params(self, value: Any) -> dict[str, Any]:
        return {}

    def grid(self, points: int) -> list:
        return [self.value]

    def describe(self) -> str:
        return f"{self.name}: fixed {self.value!r}{self._condition_text()}"
