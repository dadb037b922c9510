"""The ASGI app (``server.main:app``) and :func:`serve`, which ``e2h server`` runs.

At start the app upgrades the database to the latest Alembic revision and starts the
reaper, which requeues (or fails) runs whose worker stopped heartbeating.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from e2h import __version__
from server import crud
from server.api.routes import meta, runs, workers
from server.core.config import Settings
from server.core.db import make_engine, migrate, new_session
from server.core.errors import E2HError, error_entry, format_errors
from server.core.events import Notifier

logger = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_listen_address(host: str, settings: Settings) -> None:
    """Refuse to serve beyond this machine while anyone reaching the port could act as a worker."""
    if not is_loopback(host) and settings.worker_token is None:
        raise ValueError(
            f"refusing to listen on {host!r} without E2H_WORKER_TOKEN: set E2H_WORKER_TOKEN "
            "(and E2H_API_TOKEN to protect the other writes) or listen on 127.0.0.1"
        )


class RequestGuard:
    """Checks made before any route runs, with the API's JSON error bodies.

    * Without a worker token, only connections that arrived on a loopback address are
      answered (``serve`` refuses to bind elsewhere; this also covers
      ``uvicorn server.main:app --host 0.0.0.0``).
    * A body over the limit is 413: at once when Content-Length says so, else as soon as
      the bytes read pass it.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, loopback_only: bool) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                await JSONResponse({"detail": refusal[1]}, status_code=refusal[0])(scope, receive, send)
                return
            receive = self._limited(receive)
        await self.app(scope, receive, send)

    def _limited(self, receive: Receive) -> Receive:
        seen = 0

        async def receive_at_most() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    # An HTTPException, so the app's handler answers it as JSON {detail}.
                    raise HTTPException(
                        413, f"request body is over the limit of {self.max_body_bytes} bytes (E2H_MAX_BODY_BYTES)"
                    )
            return message

        return receive_at_most

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        server = scope.get("server")
        if self.loopback_only and server and not _loopback_or_name(server[0]):
            return 403, "this server has no E2H_WORKER_TOKEN and answers loopback connections only"
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_body_bytes:
                    return 413, (
                        f"request body of {int(value)} bytes is over the limit of {self.max_body_bytes} bytes "
                        "(E2H_MAX_BODY_BYTES)"
                    )
                break
        return None


def _loopback_or_name(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # not an address (TestClient's "testserver", a unix socket path)
        return True


def _reap_once(engine: Engine, max_attempts: int) -> list[int]:
    with new_session(engine) as session:
        return crud.reap_expired(session, max_attempts)


async def _reap_forever(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    # While the server was down no worker could heartbeat, so leases that ran out then say
    # nothing about the workers: give them one lease period to check in before reaping.
    await asyncio.sleep(max(settings.lease_seconds - settings.reaper_interval_seconds, 0.0))
    while True:
        await asyncio.sleep(settings.reaper_interval_seconds)
        try:
            changed = await run_in_threadpool(_reap_once, app.state.engine, settings.max_attempts)
        except Exception:
            logger.exception("reaping expired leases failed; trying again in %ss", settings.reaper_interval_seconds)
            continue
        if changed:
            logger.warning("runs whose lease expired were requeued, failed or cancelled: %s", changed)
            app.state.notifier.notify(*changed)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.resolved_database_url)
        await run_in_threadpool(migrate, engine)
        app.state.engine = engine
        reaper = asyncio.create_task(_reap_forever(app))
        try:
            yield
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
            engine.dispose()

    app = FastAPI(
        title="E2H Curriculum Studio",
        version=__version__,
        description="Run queue, worker protocol, curriculum snapshots and live events (DESIGN.md section 5).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.notifier = Notifier()
    app.add_middleware(
        RequestGuard, max_body_bytes=settings.max_body_bytes, loopback_only=settings.worker_token is None
    )

    @app.exception_handler(E2HError)
    async def _e2h_error(_request: Request, exc: E2HError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": format_errors(exc.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        # FastAPI answers a body that is not UTF-8 with a bare 400; it is invalid JSON like
        # any other, so it gets the same 422 as a JSON syntax error.
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            entry = error_entry(["body"], f"JSON decode error: the body is not UTF-8 ({exc.__cause__.reason})")
            return JSONResponse({"detail": [{**entry, "type": "json_invalid"}]}, status_code=422)
        return await http_exception_handler(request, exc)

    app.include_router(runs.router)
    app.include_router(workers.router)
    app.include_router(meta.router)

    default_openapi = app.openapi

    def openapi() -> dict:
        schema = default_openapi()
        schema["components"]["schemas"].update(workers.SNAPSHOT_SCHEMA_DEFS)
        return schema

    app.openapi = openapi
    return app


app = create_app()


def serve(host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None, **uvicorn_options) -> None:
    """Run the server with uvicorn (``e2h server --host --port``); refuses unsafe addresses."""
    import uvicorn

    settings = settings or Settings()
    check_listen_address(host, settings)
    if not is_loopback(host) and settings.api_token is None:
        logger.warning(
            "listening on %r without E2H_API_TOKEN: anyone who reaches it can submit, cancel and delete runs", host
        )
    uvicorn.run(create_app(settings), host=host, port=port, **uvicorn_options)
