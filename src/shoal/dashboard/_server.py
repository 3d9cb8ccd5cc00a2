"""Serving the dashboard with uvicorn: loopback by default, a token for controls beyond it."""

from __future__ import annotations

import secrets
from typing import Callable

from shoal._errors import ConfigError, MissingDependencyError
from shoal.dashboard._app import LOCAL_HOSTS

__all__ = ["is_local", "serve"]


def is_local(host: str) -> bool:
    """Whether ``host`` only listens on this machine's loopback interface."""
    return host in LOCAL_HOSTS or host.startswith("127.")


def serve(storage: str | None = None, *, host: str = "127.0.0.1", port: int = 8050, token: str | None = None,
          on_ready: Callable[[str, str | None], None] | None = None) -> None:
    """Serve the dashboard for ``storage`` until interrupted.

    Args:
        storage: SQLite file, journal file or SQLAlchemy URL (None: ./shoal.db); never created.
        host: the interface to listen on. Anything beyond loopback (0.0.0.0, a LAN address) makes
            the controls need a token.
        port: the TCP port (0: a free one).
        token: the controls' token; generated when bound beyond loopback and none is given.
        on_ready: called with the address to open (token included) and the token, before serving.

    Example:
        >>> serve("runs.db", port=8050)  # doctest: +SKIP
    """
    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError(
            "The dashboard needs Starlette and uvicorn. Install them with: pip install 'shoal[dashboard]'."
        ) from None
    from shoal.dashboard._app import create_app
    from shoal.dashboard._data import Source

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"The 'port' setting must be a whole number from 0 to 65535. Got {port!r} instead.")
    if token is not None and len(token) < 8:
        raise ConfigError("The token must be at least 8 characters long.")
    local = is_local(host)
    if token is None and not local:
        token = secrets.token_urlsafe(18)
    app = create_app(Source(storage), token=token, allowed_hosts=LOCAL_HOSTS if local else None)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    if on_ready is not None:
        # Bind first, so that port 0 can report the port it got.
        import socket

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"Cannot listen on {host}:{port}: {exc.strerror}. Pick another --port.") from None
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        shown = f"[{shown}]" if ":" in shown else shown
        url = f"http://{shown}:{sock.getsockname()[1]}/" + (f"?token={token}" if token else "")
        on_ready(url, token)
        server.run(sockets=[sock])
    else:
        server.run()
