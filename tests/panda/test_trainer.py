"""The step-level trainer: train()'s numbers without events, exact state round trips, lr semantics."""

from __future__ import annotations

import pytest

from shoal._errors import ConfigError
from shoal.data import load_dataset, prepare, train_val_split
from shoal.engine import TensorData, train
from shoal.panda._trainer import Plateau, Trainer

FIELDS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")


@pytest.fixture(scope="module")
def digits() -> TensorData:
    ds = load_dataset("digits")
    return TensorData.from_prepared(prepare(ds, train_val_split(ds, seed=0)))


def rows(records):
    return [tuple(getattr(r, f) for f in FIELDS) for r in records]


@pytest.mark.parametrize("config", [
    {"lr": 0.01, "dropout": 0.3, "batch_norm": "before", "lr_decay": "cosine", "width": 32},
    {"optimizer": "momentum", "lr": 0.05, "l1": 1e-5, "weight_decay": 1e-4, "width": 32, "batch_size": 128},
])
def test_without_events_the_trainer_equals_engine_train(digits, config):
    expected = train(config, digits, epochs=3, seed=5)
    got = Trainer(config, digits, epochs=3, seed=5).run(control=lambda t: None)
    assert rows(got.epochs) == rows(expected.epochs)


def test_state_saved_mid_epoch_goes_on_exactly(digits):
    config = {"lr": 0.01, "dropout": 0.2, "batch_norm": "after", "width": 32, "lr_decay": "step", "step_size": 1}
    whole = Trainer(config, digits, epochs=3, seed=1).run()
    saved = {}

    def grab(t):
        if t.epoch == 1 and t.step == 7 and not saved:
            saved["state"] = t.state_dict()
            t.stopped = True

    Trainer(config, digits, epochs=3, seed=1).run(control=grab)
    again = Trainer(config, digits, epochs=3, seed=1)
    again.load_state_dict(saved["state"])
    assert (again.epoch, again.step) == (1, 7)
    assert rows(again.run().epochs) == rows(whole.epochs)


def test_set_lr_continues_the_schedule_relative_to_it(digits):
    # step decay halves the lr each epoch: 0.01, 0.005, 0.0025, 0.00125
    config = {"lr": 0.01, "lr_decay": "step", "step_size": 1, "step_gamma": 0.5, "width": 16}
    t = Trainer(config, digits, epochs=4, seed=0)

    def control(tr):
        if tr.epoch == 1 and tr.step == 3 and not tr.events:
            tr.apply("set_lr", 0.1)
        if tr.epoch == 2 and tr.step == 0 and len(tr.events) == 1:
            tr.apply("multiply_lr", 0.1)

    h = t.run(control=control)
    assert [r.lr for r in h.epochs] == pytest.approx([0.01, 0.1, 0.05 * 0.1, 0.025 * 0.1])
    first = t.events[0]
    assert (first["what"], first["value"], first["epoch"], first["step"]) == ("set_lr", 0.1, 2, 3)
    assert first["lr"] == pytest.approx(0.1)
    assert (t.events[1]["what"], t.events[1]["epoch"], t.events[1]["step"]) == ("multiply_lr", 3, 0)


def test_plateau_reduces_the_lr_and_records_each_decision(digits):
    # Adam at 0.01 on digits: validation loss 0.245, 0.249 (no better: halve), 0.093, 0.097 (halve), ...
    t = Trainer({"lr": 0.01}, digits, epochs=5, seed=0, plateau=Plateau(1, 0.5))
    h = t.run()
    reductions = [e for e in t.events if e["what"] == "plateau"]
    assert [e["epoch"] for e in reductions] == [3, 5]
    lrs = [r.lr for r in h.epochs]
    for e in reductions:
        # the reduction takes effect in the epoch it names, and halves the lr of the epoch before
        assert lrs[e["epoch"] - 1] == pytest.approx(lrs[e["epoch"] - 2] * 0.5)
    assert len(set(lrs)) == len(reductions) + 1


def test_bad_commands_and_plateau_settings_are_config_errors(digits):
    t = Trainer({"width": 16}, digits, epochs=1)
    with pytest.raises(ConfigError, match="'set_lr' value must be a positive number"):
        t.apply("set_lr", -1.0)
    with pytest.raises(ConfigError, match="Unknown command 'faster'"):
        t.apply("faster")
    assert t.scale == 1.0 and t.events == []
    with pytest.raises(ConfigError, match="patience,factor"):
        Plateau.parse("3")
    with pytest.raises(ConfigError, match=r"factor must be a number in the range \(0, 1\)"):
        Plateau.parse("3,2")
