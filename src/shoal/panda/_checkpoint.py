"""Where a babysat trial's checkpoints live, and writing them so that a kill never leaves half a file.

Layout, next to the storage: ``<db stem>.checkpoints/<study>/trial-<N>/epoch-003.pt`` (after 3 epochs)
and ``epoch-003-step-00042.pt`` (a "checkpoint now" taken 42 steps into epoch 4).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from shoal._errors import ConfigError

__all__ = ["checkpoint_name", "checkpoint_root", "latest_checkpoint", "list_checkpoints", "load_checkpoint",
           "save_checkpoint", "trial_folder"]

_NAME = re.compile(r"^epoch-(\d+)(?:-step-(\d+))?\.pt$")


def checkpoint_root(storage: str | None) -> Path:
    """The folder that keeps checkpoints for ``storage`` (the ``-s`` value, before resolving).

    ``None`` (shoal.db) -> ``./shoal.checkpoints``; ``runs/x.db`` or ``sqlite:///runs/x.db`` or
    ``runs/x.log`` -> ``runs/x.checkpoints``; a server URL -> ``./shoal.checkpoints``.
    """
    s = "shoal.db" if not storage else str(storage)
    if s.startswith("sqlite:///"):
        s = s.removeprefix("sqlite:///")
    elif s.startswith("journal:"):
        s = s.removeprefix("journal:")
    elif "://" in s:
        s = "shoal.db"
    return Path(s).absolute().with_suffix(".checkpoints")


def trial_folder(root: str | Path, study: str, trial: int) -> Path:
    return Path(root) / re.sub(r"[^A-Za-z0-9_.-]+", "-", study) / f"trial-{int(trial)}"


def checkpoint_name(epoch: int, step: int = 0) -> str:
    """``epoch`` epochs completed and ``step`` steps of the next one done."""
    return f"epoch-{epoch:03d}.pt" if step == 0 else f"epoch-{epoch:03d}-step-{step:05d}.pt"


def list_checkpoints(folder: str | Path) -> list[tuple[int, int, Path]]:
    """(epoch, step, path) of each checkpoint in ``folder``, in training order."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _NAME.match(p.name)
        if m:
            found.append((int(m.group(1)), int(m.group(2) or 0), p))
    return sorted(found)


def latest_checkpoint(folder: str | Path) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1][2] if found else None


def save_checkpoint(state: dict[str, Any], folder: str | Path, name: str) -> Path:
    """Write ``state`` to ``folder/name`` atomically: a temporary file, fsync, then ``os.replace``."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    return final


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    import torch

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Checkpoint not found: {str(p)!r}.")
    # Our own files, written next to the study: they hold NumPy generator states, not only tensors.
    return torch.load(p, map_location="cpu", weights_only=False)
