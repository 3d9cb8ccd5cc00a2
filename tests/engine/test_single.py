"""The single-model engine: every hyperparameter changes the model or its training, by the numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import shoal.engine._single as single
from shoal._errors import ConfigError, Diverged, TrialFailed
from shoal.data import from_arrays, prepare, train_val_split
from shoal.engine import (
    DEFAULTS,
    TensorData,
    build_model,
    epoch_order,
    evaluate,
    hidden_widths,
    init_weight,
    lr_at,
    normalize,
    resolve_device,
    train,
)
from shoal.engine._models import set_dropout_rng

SMALL = {"width": 16, "depth": 1}  # keeps the sweeps fast


def _tensor_data(X, y, task=None) -> TensorData:
    ds = from_arrays(X, y, task=task)
    return TensorData.from_prepared(prepare(ds, train_val_split(ds, val_fraction=0.2, seed=0)))


@pytest.fixture(scope="module")
def small() -> TensorData:
    """200 rows, 8 features, 3 classes from a noisy linear rule: 160 train rows, 40 validation."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 8)).astype(np.float32)
    y = np.argmax(X[:, :3] + 0.5 * rng.normal(size=(200, 3)), axis=1)
    return _tensor_data(X, y)


@pytest.fixture(scope="module")
def noise() -> TensorData:
    """Random labels: a wide network overfits, so the validation loss soon rises."""
    rng = np.random.default_rng(0)
    return _tensor_data(rng.normal(size=(200, 8)).astype(np.float32), rng.integers(0, 3, 200))


@pytest.fixture(scope="module")
def tiny_images() -> TensorData:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 1, 8, 8)).astype(np.float32)
    y = (X[:, 0, :4].mean(axis=(1, 2)) > X[:, 0, 4:].mean(axis=(1, 2))).astype(int)
    return _tensor_data(X, y)


@pytest.fixture
def built(monkeypatch):
    """Capture every model ``train`` builds; count its training-mode forward passes in ``.steps``."""
    models = []
    original = single.build_model

    def spy(*args, **kwargs):
        model = original(*args, **kwargs)
        model.steps = 0

        def count(module, inputs):
            if module.training:
                module.steps += 1

        model.register_forward_pre_hook(count)
        models.append(model)
        return model

    monkeypatch.setattr(single, "build_model", spy)
    return models


def _curves(history) -> dict[str, list]:
    return {k: history.curve(k) for k in ("train_loss", "train_acc", "val_loss", "val_acc", "lr")}


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def _weight_norm(model: nn.Module, p: int) -> float:
    with torch.no_grad():
        return sum(float(w.abs().pow(p).sum()) for n, w in model.named_parameters()
                   if n.endswith("weight") and w.dim() > 1)


def _mlp(config, n_in=64, n_out=10, seed=0) -> nn.Module:
    return build_model("mlp", (n_in,), n_out, normalize(config), seed)


# --------------------------------------------------------------------------- initialization

@pytest.mark.parametrize(
    ("scheme", "std", "bound"),
    [
        ("normal", 0.01, None),
        ("he", math.sqrt(2.0 / 64), None),
        ("uniform", 1.0 / math.sqrt(64) / math.sqrt(3), 1.0 / math.sqrt(64)),
        ("xavier", math.sqrt(6.0 / (64 + 512)) / math.sqrt(3), math.sqrt(6.0 / (64 + 512))),
    ],
)
def test_init_scheme_sets_initial_weight_scale(scheme, std, bound):
    model = _mlp({"init": scheme, "width": 512, "depth": 1})
    first, head = _linears(model)
    w = first.weight.detach()
    assert w.shape == (512, 64)
    assert float(w.std()) == pytest.approx(std, rel=0.03)
    assert abs(float(w.mean())) < 0.05 * std
    if bound is not None:  # uniform in [-bound, bound]: the extremes come close to the bound
        assert float(w.abs().max()) <= bound
        assert float(w.abs().max()) > 0.99 * bound
    assert torch.count_nonzero(first.bias) == 0 and torch.count_nonzero(head.bias) == 0


def test_he_init_of_the_head_uses_its_own_fan_in():
    head = _linears(_mlp({"init": "he", "width": 256, "depth": 1}, n_out=200))[-1]
    assert float(head.weight.detach().std()) == pytest.approx(math.sqrt(2.0 / 256), rel=0.03)


def test_init_is_seeded():
    a, b, c = (_linears(_mlp({"init": "he"}, seed=s))[0].weight for s in (3, 3, 4))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_init_weight_unknown_scheme():
    with pytest.raises(ConfigError, match=r"The 'init' parameter must be one of normal, uniform, xavier, he\. Got 'zeros'"):
        init_weight((4, 4), "zeros", torch.Generator().manual_seed(0))


def test_xavier_conv_bound_matches_glorot():
    w = init_weight((64, 16, 3, 3), "xavier", torch.Generator().manual_seed(0))
    fan_in, fan_out = 16 * 9, 64 * 9
    assert float(w.abs().max()) <= math.sqrt(6.0 / (fan_in + fan_out))


# --------------------------------------------------------------------------- architecture

def test_hidden_widths():
    assert hidden_widths({"width": 512, "depth": 3, "shape": "taper"}) == [512, 256, 128]
    assert hidden_widths({"width": 128, "depth": 3, "shape": "constant"}) == [128, 128, 128]
    assert hidden_widths({"width": 32, "depth": 4, "shape": "taper"}) == [32, 16, 8, 8]  # never below 8


@pytest.mark.parametrize(
    ("config", "shapes"),
    [
        ({"width": 512, "depth": 3, "shape": "taper"}, [(512, 64), (256, 512), (128, 256), (10, 128)]),
        ({"width": 128, "depth": 2, "shape": "constant"}, [(128, 64), (128, 128), (10, 128)]),
        ({"width": 32, "depth": 1}, [(32, 64), (10, 32)]),
        ({"width": 64, "depth": 4}, [(64, 64)] * 4 + [(10, 64)]),
    ],
)
def test_mlp_layer_shapes(config, shapes):
    assert [tuple(m.weight.shape) for m in _linears(_mlp(config))] == shapes


def test_cnn_layer_shapes():
    model = build_model("cnn", (1, 8, 8), 10, normalize({"conv_layers": 2, "channels": 8, "kernel_size": 5,
                                                        "width": 32}), 0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [tuple(c.weight.shape) for c in convs] == [(8, 1, 5, 5), (16, 8, 5, 5)]
    # 8x8 -> pool 4x4 -> pool 2x2: the dense layer sees 16 channels * 2 * 2.
    assert [tuple(m.weight.shape) for m in _linears(model)] == [(32, 64), (10, 32)]
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


@pytest.mark.parametrize(("mode", "count"), [("off", 0), ("before", 3), ("after", 3)])
def test_batch_norm_structure(mode, count):
    model = _mlp({"batch_norm": mode, "depth": 3, "width": 32})
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == count
    cnn = build_model("cnn", (1, 8, 8), 10, normalize({"batch_norm": mode, "conv_layers": 2}), 0)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in cnn.modules()) == (2 if count else 0)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in cnn.modules()) == (1 if count else 0)


def test_batch_norm_position_changes_what_the_block_outputs():
    x = torch.randn(512, 64, generator=torch.Generator().manual_seed(0)) * 3 + 1
    out = {}
    for mode in ("off", "before", "after"):
        model = _mlp({"batch_norm": mode, "depth": 1, "width": 64, "activation": "relu", "init": "normal"})
        model.train()
        with torch.no_grad():
            out[mode] = (model.blocks[0](x), model(x))
    hidden = {k: v[0] for k, v in out.items()}
    # off: relu of tiny pre-activations (normal init, std 0.01): small, non-negative.
    assert float(hidden["off"].min()) >= 0 and float(hidden["off"].std()) < 0.2
    # before: relu of unit-normalized pre-activations: non-negative, about half zero, mean ~ 1/sqrt(2 pi).
    assert float(hidden["before"].min()) >= 0
    assert float((hidden["before"] == 0).float().mean()) == pytest.approx(0.5, abs=0.05)
    assert float(hidden["before"].mean()) == pytest.approx(1 / math.sqrt(2 * math.pi), abs=0.05)
    # after: the activations themselves are normalized per feature: mean 0, std 1, negatives present.
    assert float(hidden["after"].mean(0).abs().max()) < 1e-4
    assert float(hidden["after"].std(0, unbiased=False).mean()) == pytest.approx(1.0, abs=0.01)
    assert float(hidden["after"].min()) < -0.3
    logits = [v[1] for v in out.values()]
    assert not torch.allclose(logits[0], logits[1]) and not torch.allclose(logits[1], logits[2])
    assert not torch.allclose(logits[0], logits[2])


@pytest.mark.parametrize(
    ("activation", "low", "high"),
    [("relu", 0.0, math.inf), ("tanh", -1.0, 1.0), ("sigmoid", 0.0, 1.0), ("elu", -1.0, math.inf)],
)
def test_activation_range(activation, low, high):
    model = _mlp({"activation": activation, "width": 64})
    x = torch.randn(256, 64, generator=torch.Generator().manual_seed(0)) * 5
    with torch.no_grad():
        h = model.blocks[0](x)
    assert float(h.min()) >= low and float(h.max()) <= high
    assert float(h.min()) < low + 0.1  # the range is reached, not just respected
    assert float(h.max()) > min(high, 5.0) - 0.1


def test_every_activation_gives_different_outputs():
    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(0))
    outs = {}
    for act in ("relu", "tanh", "sigmoid", "leaky_relu", "elu", "gelu", "silu"):
        with torch.no_grad():
            outs[act] = _mlp({"activation": act, "width": 32}).eval()(x)
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not torch.allclose(outs[a], outs[b], atol=1e-4), (a, b)


def test_dropout_masks_in_training_and_not_in_eval():
    x = torch.randn(256, 64, generator=torch.Generator().manual_seed(0))
    model = _mlp({"dropout": 0.4, "width": 128, "activation": "sigmoid"})  # sigmoid: never exactly 0
    plain = _mlp({"dropout": 0.0, "width": 128, "activation": "sigmoid"})
    with torch.no_grad():
        model.eval()
        plain.eval()
        assert torch.equal(model(x), model(x)) and torch.equal(model(x), plain(x))
        model.train()
        set_dropout_rng(model, np.random.default_rng(0))
        h_drop, h_plain = model.blocks[0](x), plain.blocks[0](x)
    dropped = h_drop == 0
    assert float(dropped.float().mean()) == pytest.approx(0.4, abs=0.02)
    # Survivors are scaled by 1 / (1 - p).
    torch.testing.assert_close(h_drop[~dropped], h_plain[~dropped] / 0.6)


def test_dropout_raises_the_training_loss(digits_data):
    base = dict(SMALL, width=64, lr=1e-3)
    h0 = train(dict(base, dropout=0.0), digits_data, epochs=2)
    h5 = train(dict(base, dropout=0.5), digits_data, epochs=2)
    assert h5.last.train_loss > h0.last.train_loss + 0.05
    assert h5.last.train_acc < h0.last.train_acc


# --------------------------------------------------------------------------- every hyperparameter matters

@pytest.mark.parametrize(
    ("key", "a", "b", "extra"),
    [
        ("lr", 1e-3, 1e-2, {}),
        ("batch_size", 16, 64, {}),
        ("optimizer", "sgd", "adam", {}),
        ("optimizer", "momentum", "rmsprop", {}),
        ("momentum", 0.5, 0.95, {"optimizer": "momentum"}),
        ("rmsprop_alpha", 0.8, 0.999, {"optimizer": "rmsprop"}),
        ("beta1", 0.5, 0.95, {"optimizer": "adam"}),
        ("beta2", 0.9, 0.9999, {"optimizer": "adam"}),
        ("eps", 1e-8, 1e-1, {"optimizer": "adam"}),
        ("eps", 1e-8, 1e-1, {"optimizer": "rmsprop"}),
        ("weight_decay", 0.0, 0.1, {"optimizer": "sgd", "lr": 0.1}),
        ("l1", 0.0, 1e-2, {"optimizer": "sgd", "lr": 0.1}),
        ("lr_decay", "none", "cosine", {}),
        ("lr_decay", "none", "exponential", {}),
        ("lr_decay", "none", "step", {"step_size": 1}),
        ("step_size", 1, 2, {"lr_decay": "step"}),
        ("step_gamma", 0.1, 0.5, {"lr_decay": "step", "step_size": 1}),
        ("exp_gamma", 0.5, 0.9, {"lr_decay": "exponential"}),
        ("depth", 1, 2, {}),
        ("width", 16, 32, {}),
        ("shape", "constant", "taper", {"depth": 2, "width": 32}),
        ("init", "normal", "xavier", {}),
        ("init", "uniform", "he", {}),
        ("activation", "relu", "tanh", {}),
        ("batch_norm", "off", "before", {}),
        ("batch_norm", "before", "after", {}),
        ("dropout", 0.0, 0.3, {}),
    ],
)
def test_each_hyperparameter_changes_training(small, key, a, b, extra):
    base = {**SMALL, "lr": 1e-2, **extra}
    ha = train({**base, key: a}, small, epochs=3)
    hb = train({**base, key: b}, small, epochs=3)
    assert ha.curve("train_loss") != hb.curve("train_loss")
    assert ha.curve("val_loss") != hb.curve("val_loss")


@pytest.mark.parametrize(("key", "a", "b"), [("conv_layers", 1, 2), ("channels", 4, 8), ("kernel_size", 3, 5)])
def test_each_cnn_hyperparameter_changes_training(tiny_images, key, a, b):
    base = {"width": 16, "channels": 4, "conv_layers": 1, "lr": 1e-2}
    ha = train({**base, key: a}, tiny_images, family="cnn", epochs=2)
    hb = train({**base, key: b}, tiny_images, family="cnn", epochs=2)
    assert ha.curve("train_loss") != hb.curve("train_loss")


@pytest.mark.parametrize(
    ("optimizer", "key", "a", "b"),
    [
        ("sgd", "momentum", 0.5, 0.95),
        ("sgd", "eps", 1e-8, 1e-1),
        ("momentum", "beta1", 0.5, 0.95),
        ("adam", "rmsprop_alpha", 0.8, 0.999),
        ("rmsprop", "beta2", 0.9, 0.9999),
        ("adam", "step_size", 1, 3),
    ],
)
def test_inactive_coefficients_change_nothing(small, optimizer, key, a, b):
    base = {**SMALL, "optimizer": optimizer, "lr": 1e-2}
    ha = train({**base, key: a}, small, epochs=2)
    hb = train({**base, key: b}, small, epochs=2)
    assert _curves(ha) == _curves(hb)


def test_optimizers_give_distinct_curves(small):
    curves = {opt: tuple(train({**SMALL, "optimizer": opt, "lr": 1e-2}, small, epochs=2).curve("train_loss"))
              for opt in ("sgd", "momentum", "rmsprop", "adam")}
    assert len(set(curves.values())) == 4


def test_one_full_batch_sgd_step_matches_the_hand_computed_update(small, built):
    """One epoch of sgd with a batch larger than the data is one step:
    w <- w - lr * (grad(loss) + l1 * sign(w) + weight_decay * w) on weights, w - lr * grad on biases."""
    config = {"optimizer": "sgd", "lr": 0.1, "batch_size": 512, "weight_decay": 0.01, "l1": 1e-3,
              "width": 16, "depth": 2, "activation": "tanh", "init": "xavier"}
    history = train(config, small, epochs=1, seed=5)
    trained = built[-1]
    assert trained.steps == 1

    ref = build_model("mlp", small.input_shape, small.n_outputs, normalize(config), 5)
    loss = F.cross_entropy(ref(small.X_train), small.y_train)
    loss.backward()
    assert history.last.train_loss == pytest.approx(loss.item(), rel=1e-5)
    with torch.no_grad():
        for (name, p), (name2, q) in zip(ref.named_parameters(), trained.named_parameters()):
            assert name == name2
            step = p.grad.clone()
            if name.endswith("weight"):
                step += 1e-3 * torch.sign(p) + 0.01 * p
            torch.testing.assert_close(q, p - 0.1 * step, rtol=1e-5, atol=1e-6)


def test_l1_shrinks_the_weights(digits_data, built):
    base = {**SMALL, "width": 32, "optimizer": "sgd", "lr": 0.1}
    train({**base, "l1": 0.0}, digits_data, epochs=3)
    h = train({**base, "l1": 1e-2}, digits_data, epochs=3)
    plain, sparse = (_weight_norm(m, 1) for m in built)
    assert sparse < 0.75 * plain
    near_zero = [sum(int((w.abs() < 1e-3).sum()) for n, w in m.named_parameters() if n.endswith("weight"))
                 for m in built]
    assert near_zero[1] > 10 * max(near_zero[0], 1)  # L1 drives weights to (almost) zero
    assert h.last.val_acc > 0.85  # without wrecking the model


def test_weight_decay_shrinks_the_weights(digits_data, built):
    base = {**SMALL, "width": 32, "optimizer": "sgd", "lr": 0.1}
    train({**base, "weight_decay": 0.0}, digits_data, epochs=3)
    train({**base, "weight_decay": 0.05}, digits_data, epochs=3)
    plain, decayed = (_weight_norm(m, 2) for m in built)
    assert decayed < 0.7 * plain


@pytest.mark.parametrize(("batch_size", "steps"), [(16, 90), (64, 23), (512, 3), (2048, 1)])
def test_batch_size_sets_the_number_of_steps(digits_data, built, batch_size, steps):
    assert digits_data.n_train == 1438
    train({**SMALL, "batch_size": batch_size}, digits_data, epochs=2)
    assert built[-1].steps == 2 * steps


# --------------------------------------------------------------------------- learning-rate schedules

@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"lr_decay": "none"}, [0.1] * 6),
        ({"lr_decay": "step", "step_size": 2, "step_gamma": 0.5}, [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]),
        ({"lr_decay": "exponential", "exp_gamma": 0.9}, [0.1 * 0.9**e for e in range(6)]),
        ({"lr_decay": "cosine"}, [0.1, 0.1 * (2 + math.sqrt(3)) / 4, 0.075, 0.05, 0.025, 0.1 * (2 - math.sqrt(3)) / 4]),
    ],
    ids=["none", "step", "exponential", "cosine"],
)
def test_lr_schedule_in_history(small, config, expected):
    cfg = {**SMALL, "optimizer": "sgd", "lr": 0.1, **config}
    history = train(cfg, small, epochs=6)
    assert history.curve("lr") == pytest.approx(expected, rel=1e-12)
    assert [lr_at(normalize(cfg), e, 6) for e in range(6)] == pytest.approx(expected, rel=1e-12)


def test_lr_schedule_reaches_the_optimizer(small):
    """Step decay after 2 epochs: identical training for 2 epochs, then a different path."""
    base = {**SMALL, "optimizer": "sgd", "lr": 0.1}
    flat = train({**base, "lr_decay": "none"}, small, epochs=4).curve("train_loss")
    step = train({**base, "lr_decay": "step", "step_size": 2, "step_gamma": 0.1}, small, epochs=4).curve("train_loss")
    assert flat[:2] == step[:2]
    assert flat[2] != step[2] and flat[3] != step[3]


# --------------------------------------------------------------------------- seeds, stopping, divergence

def test_same_seed_same_history_and_different_seed_differs(small):
    config = {**SMALL, "dropout": 0.3, "batch_norm": "before", "batch_size": 32}
    a = train(config, small, epochs=3, seed=7)
    b = train(config, small, epochs=3, seed=7)
    c = train(config, small, epochs=3, seed=8)
    assert _curves(a) == _curves(b)
    assert a.curve("train_loss") != c.curve("train_loss")
    assert [r.epoch for r in a.epochs] == [1, 2, 3]


def test_epoch_order_depends_on_seed_and_epoch_only():
    a = epoch_order(3, 1, 50)
    assert sorted(a.tolist()) == list(range(50))
    assert np.array_equal(a, epoch_order(3, 1, 50))
    assert not np.array_equal(a, epoch_order(3, 2, 50)) and not np.array_equal(a, epoch_order(4, 1, 50))


def test_on_epoch_stops_training(small):
    seen = []

    def stop_at_two(record):
        seen.append(record.epoch)
        return record.epoch == 2

    history = train(SMALL, small, epochs=5, on_epoch=stop_at_two)
    assert seen == [1, 2] and len(history.epochs) == 2 and history.stopped_early
    full = train(SMALL, small, epochs=5, on_epoch=lambda r: None)
    assert len(full.epochs) == 5 and not full.stopped_early
    assert full.curve("train_loss")[:2] == history.curve("train_loss")


def test_patience_stops_after_that_many_epochs_without_improvement(noise):
    config = {"width": 64, "depth": 2, "lr": 1e-2, "batch_size": 16}
    full = train(config, noise, epochs=12).curve("val_loss")
    best_epoch = int(np.argmin(full[:6])) + 1
    assert best_epoch < 5  # the run overfits early, so patience has something to do
    stopped = train(config, noise, epochs=12, patience=2)
    # The rule replayed on the full curve: stop at the first epoch 2 epochs after the last improvement.
    best, since, expected = math.inf, 0, None
    for epoch, v in enumerate(full, start=1):
        best, since = (v, 0) if v < best else (best, since + 1)
        if since == 2:
            expected = epoch
            break
    assert expected is not None
    assert len(stopped.epochs) == expected and stopped.stopped_early
    assert stopped.curve("val_loss") == full[:expected]


def test_huge_learning_rate_diverges(digits_data):
    with pytest.raises(Diverged, match=r"training diverged at epoch \d+: train loss (nan|inf|\d).*learning rate 1e\+06"):
        train({**SMALL, "optimizer": "sgd", "lr": 1e6}, digits_data, epochs=3)
    assert issubclass(Diverged, TrialFailed)


# --------------------------------------------------------------------------- configuration errors

@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"optimizer": "adamw"}, r"The 'optimizer' parameter must be one of \['sgd', 'momentum', 'rmsprop', 'adam'\]\. Got 'adamw' instead\."),
        ({"activation": "swish"}, r"The 'activation' parameter must be one of \['relu', 'tanh'.*\]\. Got 'swish' instead\."),
        ({"batch_norm": True}, r"The 'batch_norm' parameter must be one of \['off', 'before', 'after'\]\. Got True"),
        ({"lr_decay": None}, r"The 'lr_decay' parameter must be one of .*Got None instead"),
        ({"dropout": -0.1}, r"The 'dropout' parameter must be a number in the range \[0, 1\)\. Got -0\.1 instead\."),
        ({"dropout": 1.0}, r"The 'dropout' parameter must be a number in the range \[0, 1\)\. Got 1\.0"),
        ({"lr": 0.0}, r"The 'lr' parameter must be a number in the range \(0, inf\)\. Got 0\.0 instead\."),
        ({"lr": float("nan")}, r"The 'lr' parameter must be a number in the range \(0, inf\)\. Got nan"),
        ({"lr": float("inf")}, r"The 'lr' parameter must be a number in the range \(0, inf\)\. Got inf"),
        ({"lr": "0.1"}, r"The 'lr' parameter must be a number .*Got '0\.1' instead"),
        ({"momentum": 1.0}, r"The 'momentum' parameter must be a number in the range \[0, 1\)"),
        ({"beta2": -0.5}, r"The 'beta2' parameter must be a number in the range \[0, 1\)"),
        ({"eps": 0}, r"The 'eps' parameter must be a number in the range \(0, inf\)\. Got 0"),
        ({"step_gamma": 0.0}, r"The 'step_gamma' parameter must be a number in the range \(0, 1\]"),
        ({"exp_gamma": 1.5}, r"The 'exp_gamma' parameter must be a number in the range \(0, 1\]\. Got 1\.5"),
        ({"weight_decay": -1e-4}, r"The 'weight_decay' parameter must be a number in the range \[0, inf\)"),
        ({"l1": True}, r"The 'l1' parameter must be a number in the range \[0, inf\)\. Got True"),
        ({"batch_size": 0}, r"The 'batch_size' parameter must be a positive integer\. Got 0 instead\."),
        ({"batch_size": 32.5}, r"The 'batch_size' parameter must be a positive integer\. Got 32\.5"),
        ({"depth": True}, r"The 'depth' parameter must be a positive integer\. Got True"),
        ({"width": "64"}, r"The 'width' parameter must be a positive integer\. Got '64'"),
    ],
)
def test_bad_config_values(small, config, message):
    with pytest.raises(ConfigError, match=message):
        normalize(config)
    with pytest.raises(ConfigError, match=message):
        train(config, small, epochs=1)


def test_normalize_fills_defaults_and_keeps_unknown_keys():
    out = normalize({"lr": 0.5, "batch_size": 64.0, "my_flag": "x"})
    assert out == {**DEFAULTS, "lr": 0.5, "batch_size": 64, "my_flag": "x"}
    assert type(out["batch_size"]) is int
    step_gamma_one = normalize({"step_gamma": 1.0, "momentum": 0.0})  # closed ends of the ranges
    assert step_gamma_one["step_gamma"] == 1.0 and step_gamma_one["momentum"] == 0.0


def test_normalize_accepts_numpy_scalars():
    out = normalize({"batch_size": np.int64(64), "lr": np.float32(0.01)})
    assert out["batch_size"] == 64 and out["lr"] == pytest.approx(0.01)


def test_unknown_family_and_cnn_on_tables(small):
    with pytest.raises(ConfigError, match=r"Unknown model family 'rnn'\. The families are: mlp, cnn\."):
        train(SMALL, small, family="rnn", epochs=1)
    with pytest.raises(ConfigError, match=r"The cnn preset needs image data shaped \(channels, height, width\)\. "
                                          r"Got input shape \(8,\)\. Use the mlp preset"):
        train(SMALL, small, family="cnn", epochs=1)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match=r"Unknown device 'tpu'\. Use auto, cpu, cuda or cuda:N\."):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_resolve_device_cuda_without_gpu():
    with pytest.raises(ConfigError, match=r"The device 'cuda' was asked for, but this machine has no CUDA GPU\. Use cpu\."):
        resolve_device("cuda")


# --------------------------------------------------------------------------- end to end

def test_mlp_learns_digits(digits_data):
    history = train({"optimizer": "adam", "lr": 1e-3, "width": 64, "depth": 1, "batch_size": 32},
                    digits_data, epochs=5)
    assert history.last.val_acc > 0.9
    assert history.curve("train_loss")[-1] < history.curve("train_loss")[0]
    assert len(history.epochs) == 5 and not history.stopped_early


def test_cnn_learns_digits(digits_data):
    history = train({"optimizer": "adam", "lr": 1e-2, "batch_size": 32, "width": 32, "channels": 8,
                     "conv_layers": 2}, digits_data, family="cnn", epochs=3)
    assert history.last.val_acc > 0.8


def test_history_matches_evaluate_on_the_trained_model(small, built):
    history = train({**SMALL, "dropout": 0.2, "batch_norm": "after"}, small, epochs=2)
    val_loss, val_acc = evaluate(built[-1], small.X_val, small.y_val, small.task)
    assert history.last.val_loss == pytest.approx(val_loss, rel=1e-6)
    assert history.last.val_acc == val_acc
    assert history.last.val_acc * 40 == round(history.last.val_acc * 40)  # a count out of 40 rows


def test_regression_with_mse():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    y = X @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.1 * rng.normal(size=300)
    data = _tensor_data(X, y, task="regression")
    assert data.task == "regression" and data.n_outputs == 1
    history = train({"width": 32, "depth": 1, "lr": 1e-2, "batch_size": 32}, data, epochs=10)
    losses = history.curve("train_loss")
    assert losses[-1] < 0.2 * losses[0]
    assert history.last.val_loss < 0.1  # targets are standardized: predicting the mean scores ~1
    assert history.last.train_acc is None and history.last.val_acc is None


# --------------------------------------------------------------------------- known bugs

def test_batch_norm_with_a_last_batch_of_one_row():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(81, 4)).astype(np.float32)
    data = _tensor_data(X, (X[:, 0] > 0).astype(int))
    assert data.n_train % 16 == 1
    history = train({"batch_norm": "before", "batch_size": 16, "width": 8, "depth": 1}, data, epochs=1)
    assert math.isfinite(history.last.train_loss)


def test_cnn_even_kernel_is_a_clear_error():
    rng = np.random.default_rng(0)
    data = _tensor_data(rng.normal(size=(40, 1, 28, 28)).astype(np.float32), np.arange(40) % 2)
    with pytest.raises(ConfigError, match="'kernel_size' parameter must be odd"):
        train({"kernel_size": 4, "conv_layers": 3, "channels": 4, "width": 8}, data, family="cnn", epochs=1)
