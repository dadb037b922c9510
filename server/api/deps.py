"""Dependencies: the database session, settings, the event notifier and the two bearer tokens.

They are ``async def`` although nothing in them waits: FastAPI runs a plain ``def``
dependency in the thread pool, a thread hop per dependency per request, which the
snapshot ingestion path cannot afford. The session does no I/O until a route uses it.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session

from e2h.schemas import INT32_MAX
from server.core.config import Settings
from server.core.db import new_session
from server.core.events import Notifier


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_notifier(request: Request) -> Notifier:
    return request.app.state.notifier


async def get_session(engine: Annotated[Engine, Depends(get_engine)]) -> AsyncIterator[Session]:
    session = new_session(engine)
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]
# Bounded so an id no column can hold is a 422, not a database overflow.
RunId = Annotated[int, Path(ge=1, le=INT32_MAX, description="The run's id.")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
NotifierDep = Annotated[Notifier, Depends(get_notifier)]
EngineDep = Annotated[Engine, Depends(get_engine)]

_worker_bearer = HTTPBearer(auto_error=False, scheme_name="WorkerToken", description="E2H_WORKER_TOKEN")
_api_bearer = HTTPBearer(auto_error=False, scheme_name="ApiToken", description="E2H_API_TOKEN, when set")


def _check_token(expected: SecretStr | None, given: HTTPAuthorizationCredentials | None, name: str) -> None:
    if expected is None:
        return
    offered = given.credentials.encode() if given is not None else b""
    if not hmac.compare_digest(offered, expected.get_secret_value().encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"missing or wrong bearer token (Authorization: Bearer ${name})",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def require_worker_token(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_worker_bearer)]
) -> None:
    _check_token(settings.worker_token, credentials, "E2H_WORKER_TOKEN")


async def require_api_token(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_api_bearer)]
) -> None:
    _check_token(settings.api_token, credentials, "E2H_API_TOKEN")


WorkerAuth = Depends(require_worker_token)
ApiAuth = Depends(require_api_token)
