"""An ordered, conditional search space that compiles to Optuna."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from shoal._errors import ConfigError
from shoal.space._params import Categorical, Fixed, Float, Int, Param

if TYPE_CHECKING:
    import optuna

__all__ = ["Space", "parse_value"]


class Space:
    """What may vary, in order. A parameter's condition may only name parameters before it.

    Example:
        >>> from shoal.space import Space, Float, Categorical
        >>> space = Space([
        ...     Categorical("optimizer", ["sgd", "momentum"]),
        ...     Float("lr", 1e-4, 1.0, log=True),
        ...     Float("momentum", 0.5, 0.99, when={"optimizer": "momentum"}),
        ... ])
        >>> space.names()
        ['optimizer', 'lr', 'momentum']
    """

    def __init__(self, params: Iterable[Param] = ()) -> None:
        self._params: dict[str, Param] = {}
        for p in params:
            if isinstance(p, Param) and p.name in self._params:  # add() replaces: a list names each once
                raise ConfigError(f"The parameter '{p.name}' is defined twice in the space. Keep one; to change "
                                  f"a parameter of an existing space, use space.add(...) or update(...).")
            self.add(p)

    # ------------------------------------------------------------------ access
    def __iter__(self) -> Iterator[Param]:
        return iter(self._params.values())

    def __len__(self) -> int:
        return len(self._params)

    def __contains__(self, name: object) -> bool:
        return name in self._params

    def __getitem__(self, name: str) -> Param:
        try:
            return self._params[name]
        except KeyError:
            raise ConfigError(self._unknown(name)) from None

    def names(self) -> list[str]:
        return list(self._params)

    def copy(self) -> Space:
        return Space(self._params.values())

    def _unknown(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        return (
            f"Unknown parameter '{name}'.{hint} This space has: {', '.join(self.names())}. "
            "To add a new parameter, give its full definition (e.g. in TOML "
            f"`[space.{name}]` with `type = \"float\"`, `low` and `high`)."
        )

    # ------------------------------------------------------------------ editing
    def add(self, param: Param) -> Space:
        """Add a parameter at the end (or replace one of the same name in place)."""
        if not isinstance(param, Param):
            raise ConfigError(f"A space holds Float, Int, Categorical or Fixed parameters. Got {param!r} instead.")
        order = list(self._params)
        position = order.index(param.name) if param.name in self._params else len(order)
        for key in param.when:
            if key not in self._params or order.index(key) >= position:
                raise ConfigError(
                    f"The parameter '{param.name}' is conditional on '{key}', which is not defined before "
                    f"it. Define '{key}' first, or drop the condition."
                )
        self._params[param.name] = param
        return self

    def remove(self, name: str) -> Space:
        self[name]
        dependants = [p.name for p in self if name in p.when]
        if dependants:
            raise ConfigError(
                f"Cannot remove parameter '{name}': {', '.join(dependants)} depend on it. Remove those first."
            )
        del self._params[name]
        return self

    def fix(self, name: str, value: Any) -> Space:
        """Hold a parameter at one value."""
        old = self[name]
        if isinstance(old, Categorical) and len(old.choices) > 0 and value not in old.choices:
            # Fixing a categorical to a value it never had is almost always a typo.
            if not any(isinstance(c, type(value)) for c in old.choices) or isinstance(value, str):
                raise ConfigError(
                    f"Cannot fix parameter '{name}' to {value!r}: its choices are {list(old.choices)!r}."
                )
        self._params[name] = Fixed(name, value, when=old.when)
        return self

    def override(self, name: str, spec: Any) -> Space:
        """Narrow, widen, fix, or add a parameter from a plain value (TOML, CLI or Python).

        * a scalar fixes the parameter: ``override("lr", 0.01)``
        * a list gives categorical choices: ``override("optimizer", ["adam", "sgd"])``
        * a dict edits fields: ``override("lr", {"low": 1e-3, "high": 0.3})``; with a ``type``
          ("float", "int", "categorical") it defines a new parameter.
        """
        if isinstance(spec, Param):
            if spec.name != name:
                raise ConfigError(f"Parameter given for '{name}' is named '{spec.name}'.")
            return self.add(spec)
        if isinstance(spec, Mapping):
            return self._override_fields(name, dict(spec))
        if name not in self._params:
            raise ConfigError(self._unknown(name))
        old = self._params[name]
        if isinstance(spec, (list, tuple)):
            if len(spec) == 1:
                return self.fix(name, spec[0])
            self._params[name] = Categorical(name, list(spec), when=old.when)
            return self
        return self.fix(name, spec)

    def _override_fields(self, name: str, fields: dict[str, Any]) -> Space:
        kind = fields.pop("type", None)
        when = fields.pop("when", None)
        allowed = {"low", "high", "log", "step", "pow2", "off", "choices", "value"}
        bad = sorted(set(fields) - allowed)
        if bad:
            raise ConfigError(
                f"Unknown field(s) {bad} for parameter '{name}'. Allowed: type, when, {', '.join(sorted(allowed))}."
            )
        old = self._params.get(name)
        if kind is None and old is None:
            raise ConfigError(self._unknown(name))
        if "value" in fields:
            if old is None:
                self._params[name] = Fixed(name, fields["value"], when=when or {})
                return self
            return self.fix(name, fields["value"])
        if kind is None:
            kind = {Float: "float", Int: "int", Categorical: "categorical"}.get(type(old))
            if kind is None:  # a Fixed parameter being opened up again: infer from the fields
                kind = "categorical" if "choices" in fields else (
                    "int" if all(isinstance(fields.get(k, 0), int) for k in ("low", "high")) else "float")
                if when is None:
                    when = dict(old.when)
                old = None
        classes = {"float": Float, "int": Int, "categorical": Categorical}
        if kind not in classes:
            raise ConfigError(f"The type of parameter '{name}' must be one of float, int, categorical. Got {kind!r}.")
        cls = classes[kind]
        fits = {"float": {"low", "high", "log", "step", "off"}, "int": {"low", "high", "log", "step", "pow2"},
                "categorical": {"choices"}}[kind]
        if set(fields) - fits:
            extra = sorted(set(fields) - fits)
            given = "a range (low, high) does" if extra == ["high", "low"] else \
                f"{', '.join(extra)} {'does' if len(extra) == 1 else 'do'}"
            if kind == "categorical":
                choices = ",".join(str(c) for c in getattr(old, "choices", ())) or "a,b"
                raise ConfigError(f"The parameter '{name}' is categorical: {given} not apply to it. Give its "
                                  f"choices (-p {name}={choices}), or one value to fix it.")
            article = "an" if kind == "int" else "a"
            raise ConfigError(f"The parameter '{name}' is {article} {kind}: {given} not apply to it. {article.title()} "
                              f"{kind} takes {', '.join(sorted(fits))}.")
        base: dict[str, Any] = {}
        if old is not None and isinstance(old, cls):
            base = {f: getattr(old, f) for f in old.__dataclass_fields__ if f not in ("name", "doc")}
        elif old is not None:
            base = {"when": old.when}
        base.update(fields)
        if when is not None:
            base["when"] = when
        if cls is Int:
            for key in ("low", "high", "step"):
                if isinstance(base.get(key), float) and float(base[key]).is_integer():
                    base[key] = int(base[key])
        try:
            param = cls(name, **base)
        except TypeError as exc:
            raise ConfigError(f"Bad definition for parameter '{name}': {exc}.") from None
        return self.add(param)

    def update(self, overrides: Mapping[str, Any]) -> Space:
        for name, spec in overrides.items():
            self.override(name, spec)
        return self

    # ------------------------------------------------------------------ sampling
    def sample(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Suggest every active parameter on an Optuna trial; return the config."""
        config: dict[str, Any] = {}
        for p in self._params.values():
            if p.active(config):
                config[p.name] = p.suggest(trial)
        return config

    def unconditional_distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """The Optuna distributions that every configuration suggests, whatever values are drawn:
        the first suggestion of each parameter without a condition (an "off" switch, not the value
        it guards). Samplers that draw whole points (QMC) sample these jointly."""
        out: dict[str, Any] = {}
        for p in self._params.values():
            if not p.when:
                recorder = _FirstSuggestion()
                p.suggest(recorder)
                out.update(recorder.first)
        return out

    def config_from_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Rebuild a config from an Optuna trial's stored params (e.g. for the best trial)."""
        from optuna.trial import FixedTrial

        return self.sample(FixedTrial(dict(params)))

    def contains(self, config: Mapping[str, Any]) -> bool:
        """Whether this space can produce ``config``: every active parameter's value is allowed."""
        seen: dict[str, Any] = {}
        for p in self._params.values():
            if p.active(seen):
                if p.name not in config or not p.contains(config[p.name]):
                    return False
                seen[p.name] = config[p.name]
        return True

    def params_from_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The Optuna params that make ``sample`` return ``config``: the inverse of
        ``config_from_params`` (used to enqueue a configuration chosen elsewhere)."""
        params: dict[str, Any] = {}
        for p in self._params.values():
            if p.name in config and p.active(config):
                params.update(p.optuna_params(config[p.name]))
        return params

    def _can_be_active(self, p: Param) -> bool:
        """Whether some configuration activates ``p``: each parameter its condition names can take
        an allowed value (momentum is never active when the optimizer is fixed to sgd)."""
        for key, allowed in p.when.items():
            q = self._params.get(key)
            if isinstance(q, Fixed) and q.value not in allowed:
                return False
            if isinstance(q, Categorical) and not any(c in allowed for c in q.choices):
                return False
        return True

    def grid(self, points: int = 3) -> dict[str, list]:
        """A grid for Optuna's GridSampler: every searched parameter with a few values (parameters
        that no configuration can activate are left out: they would only repeat grid points)."""
        grid: dict[str, list] = {}
        for p in self._params.values():
            if isinstance(p, Fixed) or (isinstance(p, Categorical) and len(p.choices) == 1):
                continue
            if not self._can_be_active(p):
                continue
            if isinstance(p, Float) and p.off is not None:
                grid[p.switch_name] = [True, False]
            grid[p.name] = p.grid(points)
        return grid

    def grid_size(self, points: int = 3) -> int:
        n = 1
        for values in self.grid(points).values():
            n *= len(values)
        return n

    def unreachable(self) -> list[str]:
        """Conditional parameters no configuration of this space can have: their condition names a
        value the parameter it depends on can no longer take (``momentum`` once a narrowed or
        overridden space has no ``optimizer="momentum"``), or depends on such a parameter."""
        from shoal.space._params import Categorical, Fixed

        out: list[str] = []
        for p in self._params.values():  # conditions name earlier parameters
            for key, allowed in p.when.items():
                parent = self._params.get(key)
                if key in out:
                    break
                if isinstance(parent, Categorical):
                    possible = list(parent.choices)
                elif isinstance(parent, Fixed):
                    possible = [parent.value]
                else:
                    continue
                if not any(type(v) is type(a) and v == a for v in possible for a in allowed):
                    break
            else:
                continue
            out.append(p.name)
        return out

    def describe(self) -> str:
        gone = set(self.unreachable())
        lines = [p.describe() for p in self._params.values() if p.name not in gone]
        if gone:
            lines.append(f"(not reachable here: {', '.join(n for n in self._params if n in gone)})")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Space({self.names()})"


class _FirstSuggestion:
    """A stand-in trial that records the distribution of the first ``suggest_*`` call made on it
    (the one a parameter makes whatever it draws) and answers every call with a valid value."""

    def __init__(self) -> None:
        self.first: dict[str, Any] = {}

    def _record(self, name: str, distribution: Any) -> None:
        if not self.first:
            self.first[name] = distribution

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        from optuna.distributions import FloatDistribution

        self._record(name, FloatDistribution(low, high, log=log, step=step))
        return low

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        from optuna.distributions import IntDistribution

        self._record(name, IntDistribution(low, high, log=log, step=step))
        return low

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        from optuna.distributions import CategoricalDistribution

        self._record(name, CategoricalDistribution(list(choices)))
        return list(choices)[0]


def parse_value(text: str) -> Any:
    """Parse one CLI value: ``0.01``, ``64``, ``true``, or a string (``none`` stays the string)."""
    t = text.strip()
    low = t.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no"):
        return False
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``name=value``, ``name=low:high[:log]`` or ``name=a,b,c`` from the command line."""
    if "=" not in text:
        raise ConfigError(
            f"A parameter override must look like name=value, name=low:high or name=a,b,c. Got {text!r} instead."
        )
    name, _, rhs = text.partition("=")
    name, rhs = name.strip(), rhs.strip()
    if not rhs:
        raise ConfigError(f"The override {text!r} gives no value after '='.")
    if ":" in rhs:
        parts = [s for s in rhs.split(":")]
        flags = [s.lower() for s in parts[2:]]
        if len(parts) < 2 or any(f not in ("log", "linear", "pow2") for f in flags):
            raise ConfigError(
                f"A range override must look like name=low:high, optionally followed by :log, :linear "
                f"or :pow2. Got {text!r} instead."
            )
        low, high = parse_value(parts[0]), parse_value(parts[1])
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
            raise ConfigError(f"The range in {text!r} must be two numbers, like lr=1e-4:1e-1.")
        spec: dict[str, Any] = {"low": low, "high": high}
        if "log" in flags:
            spec["log"] = True
        if "linear" in flags:
            spec["log"] = False
        if "pow2" in flags:
            spec["pow2"] = True
        return name, spec
    if "," in rhs:
        return name, [parse_value(s) for s in rhs.split(",") if s.strip()]
    return name, parse_value(rhs)
