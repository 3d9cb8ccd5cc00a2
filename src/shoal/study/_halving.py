"""Successive halving and Hyperband for populations: each rung is decided for a whole cohort.

Optuna's pruners decide one trial at a time, as its report arrives; the first trials to reach a
rung are promoted because there is nothing yet to compare them with. In a population, many
members reach a rung in the same round, so shoal decides them together: at each rung a member goes
on only if it ranks in the top ``1 / reduction_factor`` of every trial that has reached that rung
so far (this round's cohort included). A member below the cutoff stops at once and its slot is
refilled from the strategy before the next round; a promoted member simply goes on training, so no
partial training is thrown away.

Rungs are at ``min_epochs * reduction_factor**k`` epochs, below the full ``epochs``. Hyperband runs
several such schedules (brackets) side by side, from the most aggressive (first rung at
``min_epochs``) to one that trains everything fully; a trial's bracket follows from its number,
in proportion to the budget Hyperband gives each bracket. Every decision is recorded on the trial
(user attribute ``rungs``) and the rung pools are rebuilt from the stored intermediate values
when a study resumes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

__all__ = ["Halving"]


@dataclass
class Decision:
    number: int
    epoch: int
    value: float
    rank: int  # 1-based among the rung's pool
    of: int
    keep: bool

    def record(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "value": self.value, "rank": self.rank, "of": self.of, "kept": self.keep}


@dataclass
class Halving:
    """Rungs and decisions for successive halving (``brackets=1``) or Hyperband.

    Args:
        epochs: the full training length (the last rung is below it).
        maximize: whether larger values are better.
        reduction_factor: keep the top 1/reduction_factor at each rung.
        min_epochs: the first rung of the most aggressive bracket.
        hyperband: run every bracket (Hyperband) instead of one.
    """

    epochs: int
    maximize: bool = False
    reduction_factor: int = 3
    min_epochs: int = 1
    hyperband: bool = False
    pools: dict[tuple[int, int], list[float]] = field(default_factory=dict)  # (bracket, epoch) -> values

    def __post_init__(self) -> None:
        eta = self.reduction_factor
        self.n_brackets = 1
        if self.hyperband:
            self.n_brackets = max(1, int(math.floor(math.log(self.epochs / self.min_epochs, eta) + 1e-9)) + 1)
        s_max = self.n_brackets - 1
        # Hyperband's bracket s starts n_s = ceil((s_max + 1) / (s + 1) * eta**s) configurations; trials
        # are dealt to brackets in that proportion (most aggressive bracket: s = s_max).
        self._weights = [math.ceil((s_max + 1) / (s + 1) * eta**s) for s in range(self.n_brackets)]

    def bracket(self, number: int) -> int:
        """The bracket of trial ``number`` (0 = the most aggressive)."""
        if self.n_brackets == 1:
            return 0
        total = sum(self._weights)
        r = (number * 7919) % total  # spread consecutive trials over the brackets
        for s in reversed(range(self.n_brackets)):
            r -= self._weights[s]
            if r < 0:
                return self.n_brackets - 1 - s
        return 0  # pragma: no cover

    def rungs(self, bracket: int) -> list[int]:
        """The epochs at which members of ``bracket`` are compared."""
        first = self.min_epochs * self.reduction_factor**bracket
        out, r = [], first
        while r < self.epochs:
            out.append(int(r))
            r *= self.reduction_factor
        return out

    def restore(self, trials: list[optuna.trial.FrozenTrial]) -> None:
        """Refill the rung pools from a study's stored intermediate values (resume)."""
        for t in trials:
            b = t.user_attrs.get("bracket")
            if b is None:
                continue
            for epoch in self.rungs(b):
                v = t.intermediate_values.get(epoch)
                if v is not None and math.isfinite(v):
                    self.pools.setdefault((b, epoch), []).append(float(v))

    def decide(self, cohort: list[tuple[int, int, int, float]]) -> list[Decision]:
        """Decide members ``(number, bracket, epoch, value)`` that reached a rung this round."""
        decisions = []
        groups: dict[tuple[int, int], list[tuple[int, float]]] = {}
        for number, b, epoch, value in cohort:
            groups.setdefault((b, epoch), []).append((number, value))
        sign = -1.0 if self.maximize else 1.0
        for key, members in groups.items():
            pool = self.pools.setdefault(key, [])
            pool.extend(v for _, v in members)
            ranked = sorted(sign * v for v in pool)
            keep_n = max(1, len(pool) // self.reduction_factor)
            cutoff = ranked[keep_n - 1]
            for number, value in members:
                rank = 1 + sum(1 for x in ranked if x < sign * value)
                decisions.append(Decision(number, key[1], value, rank, len(pool), sign * value <= cutoff))
        return decisions
