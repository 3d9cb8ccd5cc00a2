"""FunctionalPopulation against plain training of the same module with torch.optim."""

from __future__ import annotations

import pytest
import torch

from shoal._errors import ConfigError
from shoal.engine._config import batch_bounds, epoch_order, lr_at, normalize
from shoal.engine._functional import FunctionalPopulation, ModulePool, build_member
from shoal.engine._single import data_loss, evaluate, make_optimizer

from models import Branchy, Net

CONFIGS = [
    {"optimizer": "adam", "lr": 3e-3, "weight_decay": 1e-3, "beta1": 0.8, "beta2": 0.99},
    {"optimizer": "momentum", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "lr_decay": "cosine"},
    {"optimizer": "sgd", "lr": 0.1},
    {"optimizer": "rmsprop", "lr": 1e-3, "rmsprop_alpha": 0.9, "l1": 1e-4},
    {"optimizer": "adam", "lr": 1e-3, "lr_decay": "step", "step_size": 1, "step_gamma": 0.5, "eps": 1e-6},
]
EPOCHS = 2


def plain(model_cls, cfg, seed, data, epochs=EPOCHS):
    """The reference: the module trained alone with torch.optim, batches in shoal's order."""
    full = normalize({k: v for k, v in cfg.items() if k not in ("hidden", "bn")})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kwargs = {k: cfg[k] for k in ("hidden", "bn") if k in cfg}
        model = model_cls(n_inputs=64, n_outputs=10, **kwargs)
    opt = make_optimizer(model, full)  # decay on weights (dim > 1), not biases: as shoal does
    out = []
    for e in range(epochs):
        for g in opt.param_groups:
            g["lr"] = lr_at(full, e, epochs)
        order = torch.from_numpy(epoch_order(seed, e, data.n_train))
        model.train()
        for lo, hi in batch_bounds(data.n_train, full["batch_size"]):
            idx = order[lo:hi]
            loss = data_loss(model(data.X_train[idx]), data.y_train[idx], "classification")
            if full["l1"] > 0:
                loss = loss + full["l1"] * sum(p.abs().sum() for p in model.parameters() if p.dim() > 1)
            opt.zero_grad()
            loss.backward()
            opt.step()
        out.append(evaluate(model, data.X_val, data.y_val, "classification"))
    return out, model


def assert_matches(pop, records, model_cls, configs, data, seeds):
    for i, cfg in enumerate(configs):
        ref, model = plain(model_cls, cfg, seeds[i], data)
        for e in range(EPOCHS):
            assert records[e][i].val_loss == pytest.approx(ref[e][0], abs=1e-5)
            assert records[e][i].val_acc == pytest.approx(ref[e][1], abs=1e-9)
        state = pop.state_dict(i)
        for name, t in model.state_dict().items():
            assert torch.allclose(state[name].to(t.dtype), t, atol=1e-5), name


@pytest.mark.parametrize("vmap", [True, False])
def test_each_member_trains_as_plain_torch_optim(digits_data, vmap):
    pop = FunctionalPopulation(Net, digits_data, batch_size=64, vmap=vmap)
    seeds = [10 + i for i in range(len(CONFIGS))]
    for i, cfg in enumerate(CONFIGS):
        pop.add(i, cfg, seed=seeds[i], epochs=EPOCHS)
    assert pop.vmapped is vmap
    records = [pop.run_epoch() for _ in range(EPOCHS)]
    assert [records[1][i].lr for i in range(5)] == [3e-3, pytest.approx(0.025), 0.1, 1e-3, 5e-4]
    assert_matches(pop, records, Net, CONFIGS, digits_data, seeds)


def test_batch_norm_statistics_are_kept_per_member(digits_data):
    # SGD with momentum: within 1e-6. (Adam with batch norm drifts to ~1e-4 in two epochs: its
    # normalized step turns the rounding differences of the two backward passes into steps.)
    configs = [{"optimizer": "momentum", "lr": lr, "bn": True, "weight_decay": 1e-3} for lr in (0.01, 0.1)]
    pop = FunctionalPopulation(Net, digits_data, batch_size=64)
    for i, cfg in enumerate(configs):
        pop.add(i, cfg, seed=3 + i, epochs=EPOCHS)
    assert pop.vmapped
    records = [pop.run_epoch() for _ in range(EPOCHS)]
    assert_matches(pop, records, Net, configs, digits_data, [3, 4])
    assert not torch.equal(pop.buffers["net.2.running_mean"][0], pop.buffers["net.2.running_mean"][1])


def test_snapshot_continues_where_the_member_was(digits_data):
    cfg = {"optimizer": "adam", "lr": 3e-3}
    whole = FunctionalPopulation(Net, digits_data, 64)
    whole.add("a", cfg, seed=1, epochs=EPOCHS)
    last = [whole.run_epoch()["a"] for _ in range(EPOCHS)][-1]
    first = FunctionalPopulation(Net, digits_data, 64)
    first.add("a", cfg, seed=1, epochs=EPOCHS)
    first.run_epoch()
    snap = first.snapshot("a")
    second = FunctionalPopulation(Net, digits_data, 64)
    second.add("other", {"optimizer": "sgd", "lr": 0.1}, seed=2, epochs=EPOCHS)  # a neighbour changes nothing
    second.add("a", cfg, seed=1, epochs=EPOCHS, start=snap)
    again = second.run_epoch()["a"]
    assert (again.epoch, again.val_loss) == (2, pytest.approx(last.val_loss, abs=1e-6))


def test_untraceable_module_trains_one_at_a_time_and_says_why(digits_data):
    configs = CONFIGS[:2]
    pop = FunctionalPopulation(Branchy, digits_data, 64)
    for i, cfg in enumerate(configs):
        pop.add(i, cfg, seed=i, epochs=EPOCHS)
    assert not pop.vmapped
    assert "vmap cannot batch this module" in pop.reason and "data-dependent control flow" in pop.reason
    records = [pop.run_epoch() for _ in range(EPOCHS)]
    assert_matches(pop, records, Branchy, configs, digits_data, [0, 1])


def test_pool_groups_members_by_shape_and_batch_size(digits_data):
    pool = ModulePool(Net, [digits_data])
    pool.add("a", {"hidden": 8}, 0, 0, 1)
    pool.add("b", {"hidden": 8, "lr": 0.1}, 1, 0, 1)
    pool.add("c", {"hidden": 12}, 2, 0, 1)
    pool.add("d", {"hidden": 8, "batch_size": 32}, 3, 0, 1)
    pool.add("bad", {"hidden": 8, "lr": -1.0}, 4, 0, 1)
    assert sorted(len(p) for p in pool.populations.values()) == [1, 1, 2]
    assert pool.mode_of("a") == ("vmap", None)
    assert any("differ in parameter shapes" in n for n in pool.notes)
    records, failed = pool.run_epoch()
    assert sorted(records) == ["a", "b", "c", "d"]
    assert failed == {"bad": "ConfigError: The 'lr' parameter must be a number in the range (0, inf). Got -1.0 "
                              "instead."}


def test_bad_models_are_clear_errors(digits_data):
    with pytest.raises(ConfigError, match="nn.Module class or a builder.*Got an instance of Net"):
        build_member(Net(64, 10), {}, 0, digits_data)
    with pytest.raises(ConfigError, match=r"Net\(\) needs \['width'\]"):
        class Wide(Net):
            def __init__(self, n_inputs, n_outputs, width):
                super().__init__(n_inputs, n_outputs, width)
        Wide.__name__ = "Net"
        build_member(Wide, {}, 0, digits_data)
    with pytest.raises(ConfigError, match="builder must return an nn.Module. Got dict"):
        build_member(lambda cfg: {}, {}, 0, digits_data)
