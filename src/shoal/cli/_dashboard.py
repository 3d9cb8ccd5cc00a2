"""``shoal dashboard``: the live web dashboard over a study storage."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from shoal.cli._main import StorageOpt, app, console


@app.command()
def dashboard(
    storage: StorageOpt = None,
    host: Annotated[str, typer.Option(help="Interface to listen on. Beyond 127.0.0.1 (e.g. 0.0.0.0) the controls "
                                      "need a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0: any free one).")] = 8050,
    token: Annotated[Optional[str], typer.Option(help="Token the controls require (default: none on 127.0.0.1, "
                                                 "a generated one beyond it).")] = None,
) -> None:
    """Watch studies live in the browser: curves, best so far, the population's slots and decisions,
    each trial's events, checkpoints and lineage; steer babysat runs (lr, pause, resume, stop, fork)."""
    from shoal.dashboard import serve

    def ready(url: str, tok: str | None) -> None:
        console.print(f"shoal dashboard on [bold]{url}[/] (Ctrl-C stops it)", highlight=False, soft_wrap=True)
        if tok:
            console.print(f"controls need the token [bold]{tok}[/] (already in the address above)", highlight=False,
                          soft_wrap=True)

    serve(storage, host=host, port=port, token=token, on_ready=ready)
