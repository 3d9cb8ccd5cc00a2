"""The optimizer step's C kernel (``_pop_native``): built once into the cache, IEEE float32 exactly
as the formula is written, the same on one thread and several, and a clean fallback without a
compiler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shoal.engine import _pop_native, _pop_optim
from shoal.engine._pop_optim import BLOCK, Codes, Coefficients

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
needs_cc = pytest.mark.skipif(_pop_native._compiler() is None,
                              reason="no C compiler (cc, gcc or clang, or $CC): shoal falls back to torch.compile "
                                     "or eager PyTorch, tested below")


@pytest.fixture
def fresh_native(monkeypatch, tmp_path):
    """A process-state as if nothing had been loaded, building into an empty cache directory."""
    monkeypatch.setenv("SHOAL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_pop_native, "_lib", None)
    monkeypatch.setattr(_pop_native, "_tried", False)
    monkeypatch.setattr(_pop_native, "last_error", None)
    return tmp_path / "cache"


def _problem(k: int = 8, seed: int = 0, mixed: bool = True):
    """Buffers for k members of every optimizer family, with weight decay and L1 on some, a few
    frozen entries and (optionally) blocks that straddle two members."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(40, 3000, k) * BLOCK
    if mixed:
        sizes[0] += 5  # member 1 then starts mid-block: mixed blocks
    # each member: a block of biases (row 2i: no decay, no L1), then its weights (row 2i + 1)
    code = np.concatenate([np.r_[np.full(BLOCK, 2 * i), np.full(s - BLOCK, 2 * i + 1)] for i, s in enumerate(sizes)])
    code[-BLOCK:] = 2 * k  # a block of frozen entries
    code = np.concatenate([code, np.full((-code.size) % BLOCK, 2 * k)])
    cfgs = [dict(optimizer=OPTIMIZERS[i % 4], momentum=0.9, rmsprop_alpha=0.95, beta1=0.85, beta2=0.995,
                 eps=1e-7, weight_decay=1e-3 * (i % 2), l1=1e-4 * (i % 3 == 0)) for i in range(k)]
    n = code.size
    P = torch.from_numpy(rng.standard_normal(n).astype(np.float32))
    G = torch.from_numpy(rng.standard_normal(n).astype(np.float32))
    M = torch.from_numpy((rng.standard_normal(n) * 0.1).astype(np.float32))
    V = torch.from_numpy((rng.random(n) * 0.1).astype(np.float32))
    P[::97] = 0.0  # sign(0) = 0: no L1 pull
    table = torch.from_numpy(Coefficients(cfgs).table(np.geomspace(1e-3, 1e-1, k), np.arange(1, k + 1)))
    return code, Codes(code, 2 * k, torch.device("cpu")), table, [P, G, M, V]


def _numpy_step(code, codes, table, bufs):
    """The update written out in NumPy float32, one rounding per operation (IEEE, like the kernel)."""
    P, G, M, V = (b.numpy().astype(np.float32) for b in bufs)
    t = table.numpy()[code]
    col = {name: t[:, j] for j, name in enumerate(_pop_optim.COLUMNS)}
    with np.errstate(all="ignore"):
        g = (G + col["l1"] * np.sign(P)) + col["wd"] * P
        m = (col["a1"] * M + col["a2"] * g) + col["a3"] * (g - M)
        v = col["b1"] * V + col["b2"] * (g * g)
        p = P - col["lr"] * (m / (np.sqrt(v) / col["c"] + col["eps"]))
    frozen = code == table.shape[0] - 1
    p[frozen], m[frozen], v[frozen] = P[frozen], M[frozen], V[frozen]
    return p, m, v


@needs_cc
def test_kernel_builds_once_into_the_cache_and_is_loaded_from_it(fresh_native):
    assert _pop_native.load() is not None, _pop_native.last_error
    built = list(fresh_native.glob("shoal_update_*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    _pop_native._tried, _pop_native._lib = False, None  # a second process
    assert _pop_native.load() is not None
    assert [p.stat().st_mtime_ns for p in fresh_native.glob("shoal_update_*.so")] == [stamp]
    assert not list(fresh_native.glob("tmp*")), "the temporary build folder is removed"


@needs_cc
@pytest.mark.parametrize("mixed", [False, True])
def test_kernel_is_the_formula_in_ieee_float32(fresh_native, mixed):
    assert _pop_native.load() is not None, _pop_native.last_error
    code, codes, table, bufs = _problem(mixed=mixed)
    assert (codes.mixed is not None) == mixed
    want_p, want_m, want_v = _numpy_step(code, codes, table, bufs)
    P, G, M, V = bufs
    _pop_native.update(P, G, M, V, BLOCK, codes.block, table, codes.mixed, codes.mixed_code)
    np.testing.assert_array_equal(P.numpy(), want_p)
    np.testing.assert_array_equal(M.numpy(), want_m)
    np.testing.assert_array_equal(V.numpy(), want_v)


@needs_cc
def test_kernel_gives_the_same_bits_on_one_thread_and_on_several(fresh_native, monkeypatch):
    assert _pop_native.load() is not None, _pop_native.last_error
    monkeypatch.setattr(_pop_native, "PARALLEL_MIN", 0)  # split even this small problem
    results = []
    for threads in (1, 3):
        code, codes, table, bufs = _problem(seed=3)
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for _ in range(3):
                _pop_native.update(*bufs, BLOCK, codes.block, table, codes.mixed, codes.mixed_code)
        finally:
            torch.set_num_threads(before)
        results.append([b.clone() for b in bufs])
    for one, several in zip(*results):
        assert torch.equal(one, several)


@needs_cc
def test_kernel_agrees_with_the_eager_update_to_rounding(fresh_native):
    """torch's eager ``sqrt`` is not correctly rounded (1 ulp off in places); everything else is
    the same arithmetic, so a few steps agree to a few ulps."""
    assert _pop_native.load() is not None, _pop_native.last_error
    code, codes, table, native = _problem(seed=5)
    eager = [b.clone() for b in native]
    for _ in range(5):
        _pop_native.update(*native, BLOCK, codes.block, table, codes.mixed, codes.mixed_code)
        _pop_optim._step(*eager, codes, table, _pop_optim._update)
    for a, b in zip(native, eager):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_without_a_compiler_the_step_falls_back_and_says_why(fresh_native, monkeypatch, caplog):
    monkeypatch.setenv("CC", str(fresh_native.parent / "no-such-cc"))
    assert _pop_native.load() is None
    assert "no-such-cc" in _pop_native.last_error
    monkeypatch.setattr(_pop_optim, "_compiled", None)
    monkeypatch.setattr(_pop_optim, "_native", None)
    monkeypatch.setenv("SHOAL_UPDATE", "native")  # no torch.compile after it: that too wants a compiler
    code, codes, table, bufs = _problem(seed=7)
    want = _numpy_step(code, codes, table, bufs)
    with caplog.at_level("WARNING", logger="shoal"):
        _pop_optim.flat_update(*bufs, codes, table)
    assert _pop_optim.backend == "eager"
    assert "no C kernel" in caplog.text and "no-such-cc" in caplog.text
    for got, exp in zip((bufs[0], bufs[2], bufs[3]), want):
        np.testing.assert_allclose(got.numpy(), exp, rtol=1e-5, atol=1e-6)


def test_a_broken_compiler_is_reported_with_its_message(fresh_native, monkeypatch, tmp_path):
    bad = tmp_path / "badcc"
    bad.write_text("#!/bin/sh\necho 'fatal: this compiler is broken' >&2\nexit 1\n")
    bad.chmod(0o755)
    monkeypatch.setenv("CC", str(bad))
    assert _pop_native.load() is None
    assert "this compiler is broken" in _pop_native.last_error
    assert not list(fresh_native.glob("*.so"))
