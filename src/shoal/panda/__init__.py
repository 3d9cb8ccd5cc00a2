"""Panda mode: babysit one model. Live curves, learning-rate changes while it trains (from another
terminal, through the study's storage), checkpoints each epoch, forks from any checkpoint, resume
after a crash with the same numbers, a learning-rate range test and reduce-on-plateau.

Importing this subpackage stays light; torch loads when training starts.

Example:
    >>> import shoal
    >>> r = shoal.babysit(data="digits", params={"lr": 0.01}, epochs=5, storage="panda.db")  # doctest: +SKIP
    >>> shoal.panda.set_lr("panda.db", None, r.trial, 0.001)  # from another process  # doctest: +SKIP
"""

from shoal.panda._babysit import PandaResult, babysit, fork
from shoal.panda._control import checkpoint, multiply_lr, pause, resume, send, set_lr, stop
from shoal.panda._lrfind import LRFindResult, lr_find

__all__ = [
    "LRFindResult",
    "PandaResult",
    "babysit",
    "checkpoint",
    "fork",
    "lr_find",
    "multiply_lr",
    "pause",
    "resume",
    "send",
    "set_lr",
    "stop",
]
