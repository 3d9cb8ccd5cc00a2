"""The population's optimizer step as a small C function, built once per machine and loaded with ctypes.

``torch.compile`` turns ``_pop_optim._update`` into one pass over the parameters, but a process pays
for it before its first step: importing Dynamo and Inductor, tracing, and loading (or, the first
time on a machine, compiling) the kernel. Measured on the 2-core benchmark machine, quiet: 12.5 s
with an empty Inductor cache, 4.0 s with a warm one, in every process. This file holds the same
update written in C (a few dozen lines, no torch headers): the system C compiler builds it in a fraction of
a second the first time, and later processes load the cached shared library in milliseconds.

The arithmetic is ``_update``'s, in the same order and in float32, with contraction into fused
multiply-adds turned off, so it rounds as torch's eager ops do. The build goes to the user's cache
(``$SHOAL_CACHE_DIR``, else ``$XDG_CACHE_HOME/shoal``, else ``~/.cache/shoal``), named by a hash
of the source, the flags, the compiler and the CPU's feature flags (the library is built for this
CPU with ``-march=native``; a home directory shared with another kind of machine gets its own
file). Writes are atomic (a temporary file, then a rename), so processes that start together do
not trip over each other. Without a working C compiler ``load()`` returns None and the caller
falls back to ``torch.compile`` or eager PyTorch.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

__all__ = ["SOURCE", "cache_dir", "load", "update"]

SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <pthread.h>

/* Columns of the coefficient table, as _pop_optim.COLUMNS. */
enum { LR, A1, A2, A3, B1, B2, C, EPS, WD, L1, NCOL };

static inline float sgnf(float x) { return (float)((x > 0.0f) - (x < 0.0f)); }

/* The update of one element, as _pop_optim._update writes it (same order of operations). */
static inline __attribute__((always_inline)) void upd(
        float *restrict p, const float *restrict g_in, float *restrict m, float *restrict v,
        float lr, float a1, float a2, float a3, float b1, float b2, float c, float eps, float wd, float l1) {
    float p0 = *p;
    float g = (*g_in + l1 * sgnf(p0)) + wd * p0;
    float mm = (a1 * *m + a2 * g) + a3 * (g - *m);
    float vv = b1 * *v + b2 * (g * g);
    *p = p0 - lr * (mm / (sqrtf(vv) / c + eps));
    *m = mm;
    *v = vv;
}

#define ROW(t) t[LR], t[A1], t[A2], t[A3], t[B1], t[B2], t[C], t[EPS], t[WD], t[L1]

static inline __attribute__((always_inline)) void blocks_of(
        float *P, const float *G, float *M, float *V, const int64_t block,
        const int64_t *block_code, int64_t b0, int64_t b1, const float *table) {
    for (int64_t b = b0; b < b1; ++b) {
        const float *t = table + block_code[b] * NCOL;
        const float lr = t[LR], a1 = t[A1], a2 = t[A2], a3 = t[A3], b1c = t[B1], b2 = t[B2];
        const float c = t[C], eps = t[EPS], wd = t[WD], l1 = t[L1];
        float *p = P + b * block, *m = M + b * block, *v = V + b * block;
        const float *g = G + b * block;
        for (int64_t j = 0; j < block; ++j)
            upd(p + j, g + j, m + j, v + j, lr, a1, a2, a3, b1c, b2, c, eps, wd, l1);
    }
}

/* The same loop with the block size known at compile time (16: one AVX-512 vector) and not. */
static void blocks16(float *P, const float *G, float *M, float *V, const int64_t *block_code,
                     int64_t b0, int64_t b1, const float *table) {
    blocks_of(P, G, M, V, 16, block_code, b0, b1, table);
}

static void blocks(float *P, const float *G, float *M, float *V, int64_t block,
                   const int64_t *block_code, int64_t b0, int64_t b1, const float *table) {
    if (block == 16) blocks16(P, G, M, V, block_code, b0, b1, table);
    else blocks_of(P, G, M, V, block, block_code, b0, b1, table);
}

typedef struct {
    float *P; const float *G; float *M; float *V; int64_t block;
    const int64_t *block_code; int64_t b0, b1; const float *table;
} span;

static void *run_span(void *arg) {
    span *s = (span *)arg;
    blocks(s->P, s->G, s->M, s->V, s->block, s->block_code, s->b0, s->b1, s->table);
    return NULL;
}

/* Blocks of `block` elements that share one row of the table (split over `threads` threads),
   then the elements of mixed blocks one by one (their block rows are the frozen row, which
   leaves them unchanged). */
void shoal_update(float *P, const float *G, float *M, float *V, int64_t block,
                  const int64_t *block_code, int64_t nblocks, const float *table,
                  const int64_t *mixed, const int64_t *mixed_code, int64_t nmixed, int64_t threads) {
    if (threads > 8) threads = 8;
    if (threads > 1) {
        pthread_t tid[8];
        span sp[8];
        int started[8] = {0};
        for (int64_t i = 0; i < threads; ++i) {
            span s = {P, G, M, V, block, block_code, nblocks * i / threads, nblocks * (i + 1) / threads, table};
            sp[i] = s;
        }
        for (int64_t i = 1; i < threads; ++i)
            started[i] = pthread_create(&tid[i], NULL, run_span, &sp[i]) == 0;
        run_span(&sp[0]);
        for (int64_t i = 1; i < threads; ++i) {
            if (started[i]) pthread_join(tid[i], NULL);
            else run_span(&sp[i]);  /* no thread to be had: do its share here */
        }
    } else {
        blocks(P, G, M, V, block, block_code, 0, nblocks, table);
    }
    for (int64_t i = 0; i < nmixed; ++i) {
        int64_t e = mixed[i];
        const float *t = table + mixed_code[i] * NCOL;
        upd(P + e, G + e, M + e, V + e, ROW(t));
    }
}
"""

FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared", "-pthread"]
# Below this many elements a step runs on one thread: starting a thread costs ~20-50 us.
PARALLEL_MIN = 1 << 18

_lib: ctypes.CDLL | None = None
_tried = False
last_error: str | None = None  # why the last load() returned None, for the log


def cache_dir() -> Path:
    """Where built kernels are kept: ``$SHOAL_CACHE_DIR``, else ``$XDG_CACHE_HOME/shoal``, else
    ``~/.cache/shoal``."""
    if os.environ.get("SHOAL_CACHE_DIR"):
        return Path(os.environ["SHOAL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "shoal"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _build(cc: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / "shoal_update.c"
        src.write_text(SOURCE)
        out = Path(tmp) / target.name
        subprocess.run([cc, *FLAGS, str(src), "-o", str(out), "-lm"], check=True, capture_output=True,
                       text=True, timeout=120)
        os.replace(out, target)  # atomic: a process loading it sees all of it or nothing


def load() -> ctypes.CDLL | None:
    """The built kernel (building it the first time on this machine), or None when it cannot be
    built or loaded (no C compiler, a read-only cache, Windows), with the reason in ``last_error``."""
    global _lib, _tried, last_error
    if _tried:
        return _lib
    _tried = True
    if sys.platform == "win32":
        last_error = "no native kernel on Windows"
        return None
    cc = _compiler()
    if cc is None:
        last_error = "no C compiler found (set CC, or install gcc or clang)"
        return None
    key = hashlib.sha256("\0".join([SOURCE, *FLAGS, cc, _cpu_flags()]).encode()).hexdigest()[:20]
    target = cache_dir() / f"shoal_update_{key}.so"
    try:
        if not target.exists():
            _build(cc, target)
        lib = ctypes.CDLL(str(target))
    except subprocess.CalledProcessError as err:
        last_error = f"{cc} failed: {err.stderr.strip()[:500]}"
        return None
    except (OSError, subprocess.SubprocessError) as err:
        last_error = f"{type(err).__name__}: {err}"
        return None
    fn = lib.shoal_update
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    fn.argtypes = [p, p, p, p, i64, p, i64, p, p, p, i64, i64]
    fn.restype = None
    _lib = lib
    return lib


def update(P: torch.Tensor, G: torch.Tensor, M: torch.Tensor, V: torch.Tensor, block: int,
           block_code: torch.Tensor, table: torch.Tensor, mixed: torch.Tensor | None,
           mixed_code: torch.Tensor | None) -> None:
    """One step in place with the loaded kernel: contiguous float32 CPU buffers whose length is a
    multiple of ``block``, int64 codes, a contiguous float32 ``[rows, 10]`` table. Large buffers
    are split over ``torch.get_num_threads()`` threads (the call releases the GIL)."""
    assert _lib is not None, "call load() first"
    n = P.numel()
    threads = torch.get_num_threads() if n >= PARALLEL_MIN else 1
    _lib.shoal_update(P.data_ptr(), G.data_ptr(), M.data_ptr(), V.data_ptr(), block,
                      block_code.data_ptr(), n // block, table.data_ptr(),
                      mixed.data_ptr() if mixed is not None else None,
                      mixed_code.data_ptr() if mixed_code is not None else None,
                      mixed.numel() if mixed is not None else 0, threads)
