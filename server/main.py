"""The ASGI app (``server.main:app``) and :func:`serve`, which ``e2h server`` runs.

At start the app upgrades the database to the latest Alembic revision and starts the
reaper, which requeues (or fails) runs whose worker stopped heartbeating.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
from collections.abc import AsyncIterator, Iterable
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from e2h import __version__
from e2h.settings import SERVER_HOST, SERVER_PORT
from server import crud
from server.api.routes import completions, meta, runs, sweeps, workers
from server.core.config import Settings
from server.core.db import make_engine, migrate, new_session
from server.core.errors import E2HError, error_entry, format_errors, storage_fault
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


WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_EVENTS_PATH = re.compile(r"^/runs/[^/]+/events/?$")


class RequestGuard:
    """Checks made before any route runs, with the API's JSON error bodies.

    * Without a worker token, only connections that arrived on a loopback address are
      answered (``serve`` refuses to bind elsewhere; this also covers
      ``uvicorn server.main:app --host 0.0.0.0``).
    * A connection that arrived on a loopback address must name a loopback host
      (``localhost``, ``127.0.0.1``, ``[::1]``, any port, or E2H_ALLOWED_HOSTS): a web page
      whose name an attacker re-points at 127.0.0.1 (DNS rebinding) gets 421.
    * A request from a browser page (it has an ``Origin``) is answered only for the
      server's own origin and E2H_ALLOWED_ORIGINS: 403 for every other site.
    * A write (POST, PUT, PATCH, DELETE) needs ``Content-Type: application/json`` or an
      ``Authorization`` header, which no HTML form can send: a cross-site form post gets 415.
      (``json_writes_only=False`` when both tokens are set: then every write route needs a
      token anyway, and a request without one is told so, 401, by the route.)
    * A body over the limit is 413: at once when Content-Length says so, else as soon as
      the bytes read pass it. A body whose next chunk takes over ``body_timeout`` s is 408.
    * At most ``max_event_streams`` event streams at once; one more gets 503.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        loopback_only: bool,
        allowed_origins: Iterable[str] = (),
        allowed_hosts: Iterable[str] = (),
        max_event_streams: int | None = None,
        body_timeout: float | None = None,
        json_writes_only: bool = True,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.loopback_only = loopback_only
        self.allowed_origins = {_origin_key(o) for o in allowed_origins} - {None}
        self.allowed_hosts = LOOPBACK_NAMES | {h.lower() for h in allowed_hosts}
        self.max_event_streams = max_event_streams
        self.body_timeout = body_timeout
        self.json_writes_only = json_writes_only
        # Only touched on the event loop: no lock needed.
        self.event_streams = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        stream = refusal is None and scope["method"] == "GET" and bool(_EVENTS_PATH.match(scope["path"]))
        if stream and self.max_event_streams is not None and self.event_streams >= self.max_event_streams:
            refusal = (
                503,
                (
                    f"{self.event_streams} event streams are open, the most this server serves at once "
                    "(E2H_MAX_EVENT_STREAMS); try again later or poll GET /runs/{id}/snapshots"
                ),
            )
        if refusal is not None:
            headers = {"Retry-After": "5"} if refusal[0] == 503 else None
            await JSONResponse({"detail": refusal[1]}, status_code=refusal[0], headers=headers)(scope, receive, send)
            return
        receive = self._limited(receive)
        if not stream:
            await self.app(scope, receive, send)
            return
        self.event_streams += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.event_streams -= 1

    def _limited(self, receive: Receive) -> Receive:
        seen = 0
        body_done = False

        async def receive_at_most() -> Message:
            nonlocal seen, body_done
            if body_done or self.body_timeout is None:
                message = await receive()  # after the body only a disconnect comes: wait for it as long as it takes
            else:
                try:
                    message = await asyncio.wait_for(receive(), self.body_timeout)
                except TimeoutError:
                    raise HTTPException(
                        408, f"the request body did not arrive within {self.body_timeout} s (E2H_BODY_TIMEOUT_SECONDS)"
                    ) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > self.max_body_bytes:
                    # An HTTPException, so the app's handler answers it as JSON {detail}.
                    raise HTTPException(
                        413, f"request body is over the limit of {self.max_body_bytes} bytes (E2H_MAX_BODY_BYTES)"
                    )
            else:
                body_done = True
            return message

        return receive_at_most

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        server = scope.get("server")
        if self.loopback_only and server and not _loopback_or_name(server[0]):
            return 403, "this server has no E2H_WORKER_TOKEN and answers loopback connections only"
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)
        host = headers.get(b"host")
        on_loopback = bool(server) and _is_loopback_address(server[0])
        if on_loopback and host is not None and _host_name(host.decode("latin-1")) not in self.allowed_hosts:
            return 421, (
                f"Host {host.decode('latin-1')!r} is not this server's name: on a loopback address it answers "
                "localhost, 127.0.0.1 and [::1] only (add names a proxy forwards to E2H_ALLOWED_HOSTS)"
            )
        origin = headers.get(b"origin")
        if origin is not None and not self._origin_allowed(origin.decode("latin-1"), host, scope):
            return 403, (
                f"requests from the web origin {origin.decode('latin-1')!r} are refused: only this server's own "
                "origin and E2H_ALLOWED_ORIGINS may call it from a browser"
            )
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return 413, (
                f"request body of {int(length)} bytes is over the limit of {self.max_body_bytes} bytes "
                "(E2H_MAX_BODY_BYTES)"
            )
        if self.json_writes_only and scope["method"] in WRITE_METHODS and b"authorization" not in headers:
            media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if media_type != b"application/json":
                shown = media_type.decode("latin-1") or "none"
                return 415, (
                    f"a {scope['method']} needs Content-Type: application/json (got {shown}) or an Authorization "
                    "header; this keeps web pages from posting forms to the API"
                )
        return None

    def _origin_allowed(self, origin: str, host: bytes | None, scope: Scope) -> bool:
        key = _origin_key(origin)
        if key is None:  # "null" (sandboxed frames, file: pages) or garbage
            return False
        if key in self.allowed_origins:
            return True
        if host is None:
            return False
        # The server's own origin: the scheme it was reached by and the Host the browser named.
        return key == _origin_key(f"{scope.get('scheme', 'http')}://{host.decode('latin-1')}")


def _has_port(host: bytes) -> bool:
    return host.rfind(b":") > host.rfind(b"]")


def _host_name(host: str) -> str:
    """``localhost:8000`` -> ``localhost``, ``[::1]:8000`` -> ``[::1]``; lower case, no trailing dot."""
    host = host.strip().lower()
    if _has_port(host.encode("latin-1")):
        host = host.rpartition(":")[0]
    return host.rstrip(".")


def _origin_key(origin: str) -> tuple[str, str, int | None] | None:
    """An origin as (scheme, host, port) with the scheme's default port filled in; None if it is not one."""
    parts = urlsplit(origin.strip().lower())
    if parts.scheme not in _DEFAULT_PORTS or not parts.netloc or parts.path not in ("", "/"):
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    host = parts.netloc.rpartition(":")[0] if parts.port is not None else parts.netloc
    return parts.scheme, host, port or _DEFAULT_PORTS[parts.scheme]


def _loopback_or_name(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # not an address (TestClient's "testserver", a unix socket path)
        return True


def _is_loopback_address(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        RequestGuard,
        max_body_bytes=settings.max_body_bytes,
        loopback_only=settings.worker_token is None,
        allowed_origins=settings.allowed_origins,
        allowed_hosts=settings.allowed_hosts,
        max_event_streams=settings.max_event_streams,
        body_timeout=settings.body_timeout_seconds,
        json_writes_only=settings.api_token is None or settings.worker_token is None,
    )

    @app.exception_handler(E2HError)
    async def _e2h_error(_request: Request, exc: E2HError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(DBAPIError)
    @app.exception_handler(OSError)
    async def _storage_error(request: Request, exc: Exception) -> JSONResponse:
        # A full disk or a read-only database is the operator's to fix, not a bug: say so
        # (503, the cause named) instead of a bare 500. Reads need no writes and go on.
        if (detail := storage_fault(exc)) is not None:
            logger.error("%s %s: %s", request.method, request.url.path, detail)
            return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "30"})
        return await _internal(request, exc)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": f"internal server error ({type(exc).__name__}); see the server log"}, 500)

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
    app.include_router(completions.router)
    app.include_router(sweeps.router)
    app.include_router(meta.router)

    default_openapi = app.openapi

    def openapi() -> dict:
        schema = default_openapi()
        schema["components"]["schemas"].update(workers.SNAPSHOT_SCHEMA_DEFS)
        return schema

    app.openapi = openapi
    return app


app = create_app()


def _h11_with_header_timeout(seconds: float) -> type:
    """uvicorn's h11 protocol, closing connections that do not send a request head within ``seconds``.

    uvicorn times out idle keep-alive connections but not a request head that never
    completes: without this, clients that connect and trickle bytes (slowloris) hold
    connections for ever.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._between_requests():
                self._arm()
            super().data_received(data)
            if not self._between_requests():  # the head is complete; a request is being served
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(seconds, self._head_timed_out)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self._between_requests() and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutH11Protocol


def uvicorn_options(settings: Settings) -> dict:
    """Timeouts and limits for slow or greedy clients (E2H_HEADER_TIMEOUT_SECONDS, E2H_KEEP_ALIVE_SECONDS)."""
    return {
        "http": _h11_with_header_timeout(settings.header_timeout_seconds),
        "timeout_keep_alive": settings.keep_alive_seconds,
        # A request head larger than this is refused (h11's default is 16 kB, said here so it stays so).
        "h11_max_incomplete_event_size": 16 * 1024,
    }


def serve(host: str = SERVER_HOST, port: int = SERVER_PORT, settings: Settings | None = None,
          **uvicorn_options_) -> None:
    """Run the server with uvicorn (``e2h server --host --port``); refuses unsafe addresses."""
    import uvicorn

    settings = settings or Settings()
    check_listen_address(host, settings)
    if not is_loopback(host) and settings.api_token is None:
        logger.warning(
            "listening on %r without E2H_API_TOKEN: anyone who reaches it can submit, cancel and delete runs", host
        )
    options = {**uvicorn_options(settings), **uvicorn_options_}
    uvicorn.run(create_app(settings), host=host, port=port, **options)
