"""The ``shoal`` command line (``shoal tune``, ``shoal show``, ``shoal best``, ``shoal space``)."""

from shoal.cli._main import app, main

__all__ = ["app", "main"]
