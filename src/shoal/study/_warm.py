"""Warm starts: begin a new study (new data, another machine, months later) from an earlier one.

The earlier study's top configurations run first in the new study (enqueued, so they use up the
new study's budget like any trial and the sampler learns from them); optionally the space is
narrowed around them (as a coarse-to-fine stage would). The new study records where each came from
(``warm_start`` study attribute, ``warm_start_of`` trial attribute), so that ``compare`` can answer
"did the best settings survive the new data?".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shoal._errors import ConfigError

if TYPE_CHECKING:
    import optuna

    from shoal.space import Space

__all__ = ["WarmStart", "compare", "load_warm_start"]


@dataclass
class WarmStart:
    source: str
    study: str
    direction: str
    top: list[tuple[int, float, dict[str, Any]]]  # (trial number, value, config), best first

    def record(self) -> dict[str, Any]:
        return {"from": self.source, "study": self.study, "direction": self.direction,
                "trials": [{"trial": n, "value": v} for n, v, _ in self.top]}


def load_warm_start(source: str, study: str | None, top: int) -> WarmStart:
    """The ``top`` best complete configurations of ``study`` in storage ``source``."""
    import optuna

    from shoal.study._experiment import check_stored, resolve_storage

    check_stored(source)  # opening a missing file would create it
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = resolve_storage(source)
    try:
        names = list(optuna.get_all_study_names(storage))
    except Exception as exc:  # a missing file, an unreachable server
        raise ConfigError(f"Cannot read the warm-start storage {source!r}: {exc}") from None
    if study is None:
        if len(names) != 1:
            raise ConfigError(f"The warm-start storage {source!r} holds {len(names)} studies "
                              f"({', '.join(names) or 'none'}); name one with --from-study (warm_study= from Python).")
        study = names[0]
    if study not in names:
        raise ConfigError(f"No study {study!r} in the warm-start storage {source!r}. Studies there: "
                          f"{', '.join(names) or 'none'}.")
    old = optuna.load_study(study_name=study, storage=storage)
    from optuna.trial import TrialState

    from shoal.study._objectives import feasible, pareto_front

    done = [t for t in old.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values is not None and feasible(t) and all(math.isfinite(v) for v in t.values)]
    if not done:
        raise ConfigError(f"The study {study!r} in {source!r} has no complete trial (within its limits) to start from.")
    direction = old.directions[0].name.lower()
    done.sort(key=lambda t: t.values[0] if direction == "minimize" else -t.values[0])
    if len(old.directions) > 1:  # several objectives: the Pareto front first, best first by the first one
        front = pareto_front(old)
        ids = {t.number for t in front}
        done = front + [t for t in done if t.number not in ids]
    top_trials = [(t.number, float(t.values[0]), dict(t.user_attrs.get("config") or t.params)) for t in done[:top]]
    return WarmStart(str(source), study, direction, top_trials)


def narrowed(space: Space, warm: WarmStart) -> Space:
    from shoal.study._stages import narrow

    configs = [c for _, _, c in warm.top]
    return narrow(space, configs)[0] if len(configs) >= 2 else space


def enqueue(study: optuna.Study, space: Space, warm: WarmStart) -> int:
    """Queue the earlier top configurations in the new study, once (a resumed study does not
    queue them again). Configurations the new space cannot produce are skipped. Returns how many."""
    if study.user_attrs.get("warm_start"):
        return 0
    queued = 0
    for number, value, config in warm.top:
        wanted = {p.name: config[p.name] for p in space if p.name in config}
        if not space.contains(wanted):
            continue
        study.enqueue_trial(space.params_from_config(wanted), skip_if_exists=False,
                            user_attrs={"warm_start_of": {"study": warm.study, "trial": number, "value": value}})
        queued += 1
    study.set_user_attr("warm_start", {**warm.record(), "queued": queued})
    return queued


def compare(study: optuna.Study) -> list[dict[str, Any]]:
    """For each configuration a warm start re-ran: its old rank and value, its new value and rank
    among the new study's complete trials (None where it failed or was pruned). With several
    objectives, values and ranks are the first objective's."""
    from optuna.trial import TrialState

    info = study.user_attrs.get("warm_start")
    if not info:
        raise ConfigError(f"The study {study.study_name!r} was not warm-started (run `shoal retune`).")
    from shoal.study._objectives import feasible

    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE
            and t.values is not None and feasible(t) and math.isfinite(t.values[0])]
    sign = 1.0 if study.directions[0].name.lower() == "minimize" else -1.0
    ranked = sorted(done, key=lambda t: sign * t.values[0])
    rank_of = {t.number: i + 1 for i, t in enumerate(ranked)}
    rows = []
    for old_rank, rec in enumerate(info["trials"], start=1):
        new = next((t for t in trials
                    if (t.user_attrs.get("warm_start_of") or {}).get("trial") == rec["trial"]
                    and t.user_attrs.get("fail_reason") != "interrupted"), None)
        rows.append({"old_trial": rec["trial"], "old_rank": old_rank, "old_value": rec["value"],
                     "new_trial": None if new is None else new.number,
                     "new_value": None if new is None or new.state != TrialState.COMPLETE else new.values[0],
                     "new_rank": None if new is None else rank_of.get(new.number), "of": len(ranked)})
    return rows
