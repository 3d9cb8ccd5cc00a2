"""shoal's exceptions.

Exception tree::

    ShoalError                 base of everything shoal raises on purpose
    ├── ConfigError            bad user input: unknown preset, dataset, file, parameter name,
    │                          a range with low >= high ... The CLI prints the message as one
    │                          paragraph and exits with code 2, writing nothing to the storage.
    ├── MissingDependencyError an optional extra is not installed (the message names the extra)
    ├── StorageError           the study's storage cannot be written: locked by another program,
    │                          read-only, or its disk is full. The CLI exits with code 2; every
    │                          trial recorded before stays, and running trials run again next time
    └── TrialFailed            a trial that could not finish; recorded as FAIL with its reason,
        └── Diverged           the loss became NaN / inf or exploded; the study goes on

Messages follow one shape: what was wrong, the bad value, and how to fix it, e.g.
"The 'lr' parameter must be a float in the range (0, inf). Got -1 instead."
"""

from __future__ import annotations

__all__ = ["ConfigError", "Diverged", "MissingDependencyError", "ShoalError", "StorageError", "TrialFailed"]


class ShoalError(Exception):
    """Base class of every error shoal raises on purpose."""


class ConfigError(ShoalError, ValueError):
    """Bad user input (experiment file, CLI flag, Python argument)."""


class MissingDependencyError(ShoalError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class StorageError(ShoalError):
    """The storage refused a write (locked, read-only, disk full); what it holds is intact."""


class TrialFailed(ShoalError):
    """A trial could not finish; the study records it as failed and goes on."""


class Diverged(TrialFailed):
    """Training diverged (NaN / inf loss). ``record`` is the epoch that diverged, when one was measured."""

    def __init__(self, message: str, record: object = None) -> None:
        super().__init__(message)
        self.record = record
