"""The dashboard's web app: JSON endpoints over a study storage and three static pages that poll them.

Built on Starlette (see docs/dashboard.md for why). The pages carry no data: they are fixed files,
and their script fills them from the JSON API with ``textContent`` (never as HTML), so a study or
parameter named ``<script>...`` shows as typed. plotly.js is served from the plotly package.

Endpoints (all GET unless marked):
    /api/info                              token needed for controls?, storage
    /api/studies                           every study: counts by state, best value
    /api/study?study=NAME                  summary, best so far, running trials, figures
    /api/population?study=NAME             members, slots, rung decisions, PBT copies, figure
    /api/trial?study=NAME&trial=N          config, curves, events, checkpoints, lineage, figure
    POST /api/control  {study, trial, what, value}       set_lr, multiply_lr, pause, resume, stop, checkpoint
    POST /api/fork     {study, trial, epoch, params, epochs}

Control requests must be JSON (a cross-site form cannot send that without the browser asking the
server first, and it never says yes), from the page's own origin, and carry ``X-Shoal-Token`` when
the server has a token (always when bound beyond localhost).
"""

from __future__ import annotations

import json
import secrets
from importlib import resources
from typing import TYPE_CHECKING, Any, Callable

from shoal._errors import ConfigError, MissingDependencyError, ShoalError

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request

    from shoal.dashboard._data import Source

__all__ = ["LOCAL_HOSTS", "create_app"]

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
PAGES = {"/": "index.html", "/study": "study.html", "/trial": "trial.html"}
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


def _starlette():
    try:
        import starlette  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "The dashboard needs Starlette and uvicorn. Install them with: pip install 'shoal[dashboard]'."
        ) from None


def _asset(name: str) -> str:
    return resources.files("shoal.dashboard").joinpath("static", name).read_text(encoding="utf-8")


def create_app(source: Source | str | None, *, token: str | None = None,
               allowed_hosts: tuple[str, ...] | None = LOCAL_HOSTS) -> Starlette:
    """The dashboard app over one storage.

    Args:
        source: a ``Source`` or the storage (file or URL; None: ./shoal.db).
        token: when set, control requests must send it in the ``X-Shoal-Token`` header.
        allowed_hosts: host names the app answers to (the ``Host`` header; None: any). The default,
            loopback names only, keeps a web page from reaching the dashboard through a DNS name
            pointed at 127.0.0.1.

    Example:
        >>> import uvicorn  # doctest: +SKIP
        >>> uvicorn.run(create_app("runs.db"), host="127.0.0.1", port=8050)  # doctest: +SKIP
    """
    _starlette()
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    from shoal.dashboard import _actions
    from shoal.dashboard._data import NotFound, Source, clean, population_view, study_list, study_view, trial_view

    src = source if isinstance(source, Source) else Source(source)
    hosts = None if allowed_hosts is None else set(allowed_hosts)
    cache: dict[str, bytes] = {}

    def answer(status: int, body: Any) -> JSONResponse:
        return JSONResponse(clean(body), status_code=status, headers={"Cache-Control": "no-store"})

    def guarded(fn: Callable[..., Any]) -> Callable[[Request], Any]:
        """Run a view in a thread; its errors become JSON: bad input 400, unknown study or trial 404."""
        async def endpoint(request: Request):
            if hosts is not None and request.url.hostname not in hosts:
                return answer(400, {"error": f"Unknown host {request.url.hostname!r}: open the dashboard as "
                                             "http://127.0.0.1:PORT/ (or start it with --host)."})
            try:
                return answer(200, await fn(request))
            except NotFound as exc:
                return answer(404, {"error": str(exc)})
            except ShoalError as exc:
                return answer(400, {"error": str(exc)})
        return endpoint

    def query(request: Request, key: str) -> str:
        value = request.query_params.get(key)
        if not value:
            raise ConfigError(f"Missing the {key!r} query parameter.")
        return value

    def query_int(request: Request, key: str) -> int:
        text = query(request, key)
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"The {key!r} parameter must be a whole number. Got {text!r} instead.") from None

    async def body(request: Request) -> dict[str, Any]:
        """A control request's JSON body, after the checks in the module docstring."""
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise ConfigError("Control requests must be JSON (Content-Type: application/json).")
        origin = request.headers.get("origin")
        if origin and origin.split("://", 1)[-1] != request.headers.get("host"):
            raise PermissionError(f"Control requests must come from the dashboard's own pages, not {origin!r}.")
        if token is not None and not secrets.compare_digest(request.headers.get("x-shoal-token", ""), token):
            raise PermissionError("This dashboard's controls need its token: open the address it printed "
                                  "(…/?token=…) or enter the token on the trial page.")
        try:
            data = json.loads(await request.body())
        except ValueError:
            raise ConfigError("The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise ConfigError("The request body must be a JSON object.")
        return data

    def post(fn: Callable[[dict[str, Any]], Any]) -> Callable[[Request], Any]:
        async def view(request: Request):
            data = await body(request)
            return await run_in_threadpool(fn, data)

        inner = guarded(view)

        async def endpoint(request: Request):
            try:
                return await inner(request)
            except PermissionError as exc:
                return answer(403 if "own pages" in str(exc) else 401, {"error": str(exc)})
        return endpoint

    def get(fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def view(request: Request):
            return await run_in_threadpool(fn, request)
        return guarded(view)

    def page(name: str):
        async def endpoint(request: Request):
            if hosts is not None and request.url.hostname not in hosts:
                return Response("unknown host", status_code=400, media_type="text/plain")
            return HTMLResponse(_asset(name), headers={
                "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                           "script-src 'self' 'unsafe-eval'"})  # plotly.js compiles some code at run time
        return endpoint

    async def static(request: Request):
        name = request.path_params["name"]
        if name == "plotly.min.js":
            if name not in cache:
                from shoal.report._html import _plotly

                cache[name] = _plotly()[1]().encode()
            return Response(cache[name], media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})
        if name not in ASSETS:  # a fixed list: no request text reaches the filesystem
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(_asset(name), media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})

    def info(request: Request) -> dict[str, Any]:
        return {"token_required": token is not None, "storage": src.url or str(src.spec or "shoal.db"),
                "controls": list(_actions.CONTROLS) + ["fork"]}

    routes = [Route(path, page(name)) for path, name in PAGES.items()] + [
        Route("/static/{name}", static),
        Route("/api/info", get(info)),
        Route("/api/studies", get(lambda r: {"studies": study_list(src)})),
        Route("/api/study", get(lambda r: study_view(src, query(r, "study")))),
        Route("/api/population", get(lambda r: population_view(src, query(r, "study")))),
        Route("/api/trial", get(lambda r: trial_view(src, query(r, "study"), query_int(r, "trial")))),
        Route("/api/control", post(lambda d: _actions.control(src, d.get("study"), d.get("trial"), d.get("what"),
                                                              d.get("value"))), methods=["POST"]),
        Route("/api/fork", post(lambda d: _actions.start_fork(src, d.get("study"), d.get("trial"), d.get("epoch"),
                                                              d.get("params"), d.get("epochs"))), methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.source = src
    app.state.token = token
    return app
