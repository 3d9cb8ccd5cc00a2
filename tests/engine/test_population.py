"""Member k of a population computes what the single-model engine computes: tested member by member.

One heterogeneous population holds every case below at once (so mixing them is tested too); each
case is then compared with its own ``shoal.engine.train`` run, epoch by epoch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from shoal.data import load_dataset, prepare, train_val_split
from shoal.engine import TensorData, train
from shoal.engine._population import Population

EPOCHS = 3
TOL = 1e-4
# Some trajectories amplify rounding: a parameter whose true gradient is ~0 gets float32 noise as
# gradient, which Adam and RMSprop scale up to steps of +-lr; a ReLU unit near its kink flips. For
# those, the single engine itself moves when its initial weights are scaled by (1 + 1e-7), or when
# it runs on 2 threads instead of 1. Each case is compared at TOL plus twice the reference's own
# spread under those two rounding-size changes (< 1e-6 for well-posed cases): the population must
# match the single engine as closely as the single engine matches itself.
BASE = {"width": 32, "depth": 2, "lr": 3e-3, "optimizer": "adam"}

MLP_CASES = {
    "sgd": {"optimizer": "sgd", "lr": 0.05},
    "momentum": {"optimizer": "momentum", "lr": 0.01, "momentum": 0.8},
    "momentum_high": {"optimizer": "momentum", "lr": 0.005, "momentum": 0.97},
    "rmsprop": {"optimizer": "rmsprop", "lr": 1e-3, "rmsprop_alpha": 0.9, "eps": 1e-7},
    "adam_betas": {"optimizer": "adam", "beta1": 0.8, "beta2": 0.95, "eps": 1e-6},
    "adam_default": {},
    "l2": {"weight_decay": 1e-2},
    "l2_sgd": {"optimizer": "sgd", "lr": 0.05, "weight_decay": 5e-3},
    "l1": {"l1": 1e-3},
    "dropout": {"dropout": 0.3},
    "dropout_high": {"dropout": 0.5, "optimizer": "momentum", "lr": 0.01},
    "init_normal": {"init": "normal"},
    "init_uniform": {"init": "uniform"},
    "init_xavier": {"init": "xavier"},
    "init_he": {"init": "he"},
    "wide": {"width": 64},
    "deep": {"depth": 4},
    "shallow": {"depth": 1},
    "taper": {"width": 64, "depth": 3, "shape": "taper"},
    **{f"act_{a}": {"activation": a} for a in ("relu", "tanh", "sigmoid", "leaky_relu", "elu", "gelu", "silu")},
    "bn_before": {"batch_norm": "before", "optimizer": "momentum", "lr": 0.01},
    "bn_before_adam": {"batch_norm": "before"},
    "bn_before_rmsprop": {"batch_norm": "before", "optimizer": "rmsprop", "lr": 1e-3},
    "bn_after": {"batch_norm": "after", "activation": "tanh"},
    "bn_before_sgd": {"batch_norm": "before", "optimizer": "sgd", "lr": 0.05, "dropout": 0.2},
    "bn_after_rmsprop": {"batch_norm": "after", "optimizer": "rmsprop", "lr": 1e-3},
    "decay_step": {"lr_decay": "step", "step_size": 1, "step_gamma": 0.5},
    "decay_exponential": {"lr_decay": "exponential", "exp_gamma": 0.8},
    "decay_cosine": {"lr_decay": "cosine"},
    # Two members whose last hidden layer is 8 wide, in one batch-norm run: their gamma and beta
    # rows are padded to whole optimizer blocks, so the run's slice of them is not contiguous.
    "narrow_bn_a": {"width": 32, "depth": 3, "shape": "taper", "batch_norm": "before", "optimizer": "momentum",
                    "lr": 0.05, "activation": "leaky_relu"},
    "narrow_bn_b": {"width": 32, "depth": 3, "shape": "taper", "batch_norm": "before", "optimizer": "momentum",
                    "lr": 0.02, "activation": "leaky_relu"},
    "everything": {"optimizer": "momentum", "lr": 0.02, "weight_decay": 1e-3, "l1": 1e-4, "dropout": 0.25,
                   "init": "xavier", "width": 64, "depth": 3, "shape": "taper", "activation": "elu",
                   "batch_norm": "after", "lr_decay": "cosine"},
}
CNN_CASES = {
    "cnn_adam": {"channels": 4, "conv_layers": 2, "width": 32},
    "cnn_bn_dropout": {"channels": 4, "conv_layers": 1, "width": 16, "batch_norm": "before", "dropout": 0.3,
                       "optimizer": "momentum", "lr": 0.01},
    "cnn_k5_tanh": {"channels": 8, "conv_layers": 2, "kernel_size": 5, "width": 16, "activation": "tanh",
                    "batch_norm": "after", "optimizer": "rmsprop", "lr": 1e-3},
}


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    return ds, TensorData.from_prepared(prepare(ds, train_val_split(ds, val_fraction=0.2, seed=0)))


def _cfg(case: dict) -> dict:
    return {**BASE, **case}


def _run(family: str, cases: dict, data: TensorData, epochs: int = EPOCHS) -> dict:
    pop = Population(family, data.input_shape, data.n_outputs, data.task, batch_size=64)
    for i, (name, case) in enumerate(cases.items()):
        pop.add(name, _cfg(case), seed=i, data=data, epochs=epochs)
    return _finish(pop, epochs)


def _finish(pop: Population, epochs: int) -> dict:
    curves: dict = {k: [] for k in pop.keys()}
    for _ in range(epochs):
        for k, r in pop.run_epoch().items():
            curves[k].append(r)
    return curves


@pytest.fixture(scope="module")
def mlp_curves(digits):
    return _run("mlp", MLP_CASES, digits[1])


@pytest.fixture(scope="module")
def cnn_curves(digits):
    return _run("cnn", CNN_CASES, digits[1])


def _reference(config, data, seed, family, epochs):
    import torch

    import shoal.engine._single as single

    threads = torch.get_num_threads()
    runs = []
    for n in (1, 2):
        torch.set_num_threads(n)
        runs.append(train(config, data, family=family, epochs=epochs, seed=seed).epochs)
    torch.set_num_threads(threads)
    build = single.build_model

    def nudged(*args, **kwargs):
        model = build(*args, **kwargs)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1 + 1e-7)
        return model

    single.build_model = nudged
    try:
        runs.append(train(config, data, family=family, epochs=epochs, seed=seed).epochs)
    finally:
        single.build_model = build
    spread = max(abs(a.val_loss - b.val_loss) for run in runs[1:] for a, b in zip(runs[0], run))
    return runs[0], spread


def _assert_same(records, config, data, seed, family="mlp", epochs=EPOCHS):
    ref, spread = _reference(config, data, seed, family, epochs)
    tol = TOL + 2 * spread
    assert len(records) == len(ref)
    for got, want in zip(records, ref):
        assert got.epoch == want.epoch and got.lr == pytest.approx(want.lr, rel=1e-12)
        assert abs(got.val_loss - want.val_loss) < tol, (got.epoch, got.val_loss, want.val_loss, spread)
        assert abs(got.train_loss - want.train_loss) < tol
        if spread < 1e-5:
            assert got.val_acc == pytest.approx(want.val_acc, abs=2.0 / data.y_val.shape[0])




@pytest.mark.parametrize("name", list(MLP_CASES))
def test_mlp_member_matches_single_engine(name, mlp_curves, digits):
    seed = list(MLP_CASES).index(name)
    _assert_same(mlp_curves[name], _cfg(MLP_CASES[name]), digits[1], seed)


@pytest.mark.parametrize("name", list(CNN_CASES))
def test_cnn_member_matches_single_engine(name, cnn_curves, digits):
    seed = list(CNN_CASES).index(name)
    _assert_same(cnn_curves[name], _cfg(CNN_CASES[name]), digits[1], seed, family="cnn")


def test_member_joining_late_matches_its_own_run(digits):
    data = digits[1]
    pop = Population("mlp", data.input_shape, data.n_outputs, data.task, batch_size=64)
    pop.add("early", _cfg({"dropout": 0.2}), seed=1, data=data, epochs=5)
    pop.run_epoch(), pop.run_epoch()
    pop.add("late", _cfg({"width": 64, "optimizer": "momentum", "lr": 0.01}), seed=2, data=data, epochs=3)
    assert pop.epoch_of("early") == 2 and pop.epoch_of("late") == 0
    curves = _finish(pop, 3)
    _assert_same(curves["late"], _cfg({"width": 64, "optimizer": "momentum", "lr": 0.01}), data, 2)
    ref, spread = _reference(_cfg({"dropout": 0.2}), data, 1, "mlp", 5)
    assert [r.epoch for r in curves["early"]] == [3, 4, 5]
    assert max(abs(a.val_loss - b.val_loss) for a, b in zip(curves["early"], ref[2:])) < TOL + 2 * spread
    pop.remove("early")
    assert pop.keys() == ["late"] and len(pop) == 1


def test_members_with_different_folds(digits):
    from shoal.data import kfold_splits

    ds = digits[0]
    folds = [TensorData.from_prepared(prepare(ds, s)) for s in list(kfold_splits(ds, k=3, seed=0))[:2]]
    folds.append(TensorData.from_prepared(prepare(ds, train_val_split(ds, val_fraction=0.35, seed=1))))
    assert len({f.n_train for f in folds}) > 1
    data = folds[0]
    pop = Population("mlp", data.input_shape, data.n_outputs, data.task, batch_size=64)
    cfgs = [_cfg({"batch_norm": "before", "optimizer": "sgd", "lr": 0.05}), _cfg({"dropout": 0.3}), _cfg({"optimizer": "sgd", "lr": 0.05})]
    for i, (cfg, fold) in enumerate(zip(cfgs, folds)):
        pop.add(i, cfg, seed=i, data=fold, epochs=EPOCHS)
    curves = _finish(pop, EPOCHS)
    for i, (cfg, fold) in enumerate(zip(cfgs, folds)):
        _assert_same(curves[i], cfg, fold, i)


def test_diverging_member_does_not_poison_others(digits):
    data = digits[1]
    pop = Population("mlp", data.input_shape, data.n_outputs, data.task, batch_size=64)
    pop.add("bad", _cfg({"optimizer": "sgd", "lr": 1e5}), seed=0, data=data, epochs=EPOCHS)
    pop.add("good", _cfg({}), seed=1, data=data, epochs=EPOCHS)
    pop.add("good_bn", _cfg({"batch_norm": "before", "optimizer": "sgd", "lr": 0.05}), seed=2, data=data,
            epochs=EPOCHS)
    curves = _finish(pop, EPOCHS)
    assert not math.isfinite(curves["bad"][-1].val_loss) or not math.isfinite(curves["bad"][-1].train_loss)
    _assert_same(curves["good"], _cfg({}), data, 1)
    _assert_same(curves["good_bn"], _cfg({"batch_norm": "before", "optimizer": "sgd", "lr": 0.05}), data, 2)


def test_regression_member_matches(digits):
    ds = digits[0]
    X = ds.X.reshape(len(ds), -1)
    rng = np.random.default_rng(0)
    from shoal.data._prepare import Prepared

    y = (X[:, :8].sum(1) + rng.normal(size=len(ds))).astype(np.float32)
    prep = Prepared(X[:1400], y[:1400], X[1400:], y[1400:], None, None, (64,), 1, "regression",
                    "none", np.zeros(64), np.ones(64))
    data = TensorData.from_prepared(prep)
    pop = Population("mlp", data.input_shape, 1, "regression", batch_size=64)
    pop.add(0, _cfg({"lr": 1e-3, "batch_norm": "after"}), seed=0, data=data, epochs=EPOCHS)
    curves = _finish(pop, EPOCHS)
    ref = train(_cfg({"lr": 1e-3, "batch_norm": "after"}), data, epochs=EPOCHS, seed=0).epochs
    for got, want in zip(curves[0], ref):
        assert abs(got.val_loss - want.val_loss) < TOL * max(1.0, abs(want.val_loss))
        assert got.val_acc is None and got.train_acc is None


def test_population_rejects_a_different_batch_size(digits):
    from shoal._errors import ConfigError

    data = digits[1]
    pop = Population("mlp", data.input_shape, data.n_outputs, data.task, batch_size=64)
    with pytest.raises(ConfigError, match="'batch_size' of member 'x' must be the population's 64"):
        pop.add("x", {"batch_size": 32}, seed=0, data=data, epochs=1)
    pop.add("x", {}, seed=0, data=data, epochs=1)
    with pytest.raises(ConfigError, match="already has a member 'x'"):
        pop.add("x", {}, seed=0, data=data, epochs=1)
    assert pop.run_epoch().keys() == {"x"}


def test_padded_members_match_their_own_runs(digits):
    """Members padded to a shared width (pad=True) compute what they compute alone."""
    data = digits[1]
    cases = {
        "w32": {"width": 32, "depth": 2, "dropout": 0.2},
        "w64": {"width": 64, "depth": 2, "batch_norm": "before", "optimizer": "momentum", "lr": 0.01},
        "w64_taper": {"width": 64, "depth": 2, "shape": "taper", "batch_norm": "after", "activation": "sigmoid"},
        "w128": {"width": 128, "depth": 2, "optimizer": "rmsprop", "lr": 1e-3, "l1": 1e-5, "weight_decay": 1e-4},
    }
    pop = Population("mlp", data.input_shape, data.n_outputs, data.task, batch_size=64, pad=True)
    for i, (name, case) in enumerate(cases.items()):
        pop.add(name, _cfg(case), seed=i, data=data, epochs=EPOCHS)
    pop.run_epoch()
    layout = pop._layout
    padded = [m for m in layout.members if m.pspecs != m.specs]
    assert padded, "the cost model should pad narrow members at batch 64"
    assert len(layout.layers[0]) < len(cases)
    pop.remove("w128")  # re-stacking keeps each member's own (unpadded) tensors intact
    curves = _finish(pop, EPOCHS - 1)
    single = {name: _reference(_cfg(case), data, i, "mlp", EPOCHS) for i, (name, case) in enumerate(cases.items())}
    for name in ("w32", "w64", "w64_taper"):
        ref, spread = single[name]
        for got, want in zip(curves[name], ref[1:]):
            assert abs(got.val_loss - want.val_loss) < TOL + 2 * spread, (name, got.epoch)


def test_dropout_masks_follow_each_members_stream_whatever_the_chunk(digits, monkeypatch):
    """Masks drawn a few steps per NumPy call equal masks drawn a whole epoch per call, and equal
    the single engine's draws: per step, per layer, rows x width from the member's own stream."""
    import torch

    import shoal.engine._pop_dropout as pop_dropout
    from shoal.engine._config import dropout_rng

    data = digits[1]
    short = TensorData(data.X_train[:1000], data.y_train[:1000], data.X_val, data.y_val, data.input_shape,
                       data.n_outputs, data.task)  # a shorter last step than the others
    pop = Population("mlp", data.input_shape, data.n_outputs, data.task, batch_size=64)
    pop.add("taper", _cfg({"dropout": 0.3, "depth": 3, "shape": "taper", "width": 64}), seed=0, data=data, epochs=1)
    pop.add("half", _cfg({"dropout": 0.5}), seed=1, data=short, epochs=1)
    pop.add("none", _cfg({}), seed=2, data=data, epochs=1)
    layout = pop._stack()
    n = np.array([m.data.n_train for m in layout.members])
    S = int(max(-(-n // 64)))
    counts = np.clip(n[:, None] - 64 * np.arange(S)[None, :], 0, 64)

    def all_masks():
        drop = pop_dropout.DropoutMasks(layout, [dropout_rng(m.seed, 0) for m in layout.members], counts, 64,
                                        torch.device("cpu"))
        # a step's masks are views of buffers the next chunk reuses: keep copies
        return [{key: m.clone() for key, m in drop.step(i, int(counts[:, i].max())).items()} for i in range(S)], \
            drop.chunk

    whole, chunk = all_masks()
    assert chunk == S
    monkeypatch.setattr(pop_dropout, "CHUNK_BYTES", 1)
    pieces, chunk = all_masks()
    assert chunk == 1
    for a, b in zip(whole, pieces):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # member "half" (sorted position k): its own stream, step by step, layer by layer
    k = [m.key for m in layout.members].index("half")
    rng = dropout_rng(1, 0)
    for i in range(S):
        for l in range(2):
            j, b = next((j, b) for j, b in enumerate(layout.layers[l]) if b.start <= k < b.end)
            rows = int(counts[k, i])
            want = (rng.random((rows, 32), dtype=np.float32) >= 0.5) * np.float32(2.0)
            assert np.array_equal(pieces[i][(l, j)][k - b.start, :rows].numpy(), want)


def test_a_last_batch_of_one_row_joins_the_batch_before_as_in_the_single_engine(digits):
    """1409 rows at batch 64: the single engine trains a last batch of 65 rows (batch norm cannot
    normalize one row); the population did one of 1 row (NaN under batch norm) before."""
    data = digits[1]
    data = TensorData(data.X_train[:1409], data.y_train[:1409], data.X_val, data.y_val, data.input_shape,
                      data.n_outputs, data.task)
    cases = {"bn_dropout": _cfg({"optimizer": "sgd", "lr": 0.05, "batch_norm": "after", "dropout": 0.2})}
    pop = Population("mlp", data.input_shape, data.n_outputs, data.task, batch_size=64)
    for i, (name, cfg) in enumerate(cases.items()):
        pop.add(name, cfg, seed=i, data=data, epochs=2)
    curves = _finish(pop, 2)
    for i, (name, cfg) in enumerate(cases.items()):
        _assert_same(curves[name], cfg, data, i, epochs=2)


@pytest.mark.parametrize("bn", ["before", "after"])
def test_a_batch_norm_member_computes_the_same_bits_alone_or_beside_others(digits, bn):
    """A batch-norm run normalizes its members side by side; what it hands the activation must not
    depend on how many share it. Before the run's output was made contiguous, GELU rounded the
    strided view of a run of two differently from a run of one (1e-8 a step), and RMSprop, through
    the bias before batch norm whose true gradient is 0, grew that to 1e-5 in validation loss, so a
    seeded study could end a validation image apart depending on how members were grouped."""
    import torch

    data = digits[1]
    cfg = _cfg({"width": 64, "depth": 2, "optimizer": "rmsprop", "lr": 1e-3, "batch_norm": bn,
                "activation": "gelu"})

    def member_after(twins: int):
        pop = Population("mlp", data.input_shape, data.n_outputs, data.task, batch_size=64)
        pop.add("m", cfg, seed=3, data=data, epochs=4)
        for i in range(twins):
            pop.add(f"t{i}", {**cfg, "lr": 2e-3 * (i + 1)}, seed=10 + i, data=data, epochs=4)
        records = [pop.run_epoch()["m"] for _ in range(2)]
        return records, pop.snapshot("m")["state"]

    alone, state = member_after(0)
    for twins in (1, 3):
        records, other = member_after(twins)
        assert [r.val_loss for r in records] == [r.val_loss for r in alone]
        assert all(torch.equal(state[k], other[k]) for k in state)
