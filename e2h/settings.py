"""Defaults every process shares, and the client's settings (CLI, dashboard, scripts). No torch.

Each process kind has one settings object read from ``E2H_*`` environment variables:
:class:`ClientSettings` here (who talks to a server), ``server.core.config.Settings`` (the
server) and ``worker.settings.WorkerSettings`` (a worker). A command-line option, when given,
wins over its variable; the defaults below are the only place the server's address is written.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, BeforeValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVER_HOST = "127.0.0.1"
SERVER_PORT = 8000
SERVER_URL = f"http://{SERVER_HOST}:{SERVER_PORT}"
DASHBOARD_PORT = 8501

# `E2H_API_TOKEN= e2h server` must not mean "the token is the empty string": empty is unset.
OptionalSecret = Annotated[str | None, BeforeValidator(lambda v: None if v == "" else v)]
# An empty E2H_SERVER_URL is unset too: this machine's server.
ServerUrl = Annotated[str, BeforeValidator(lambda v: SERVER_URL if v in ("", None) else v)]


class ClientSettings(BaseSettings):
    """Who a client talks to: ``E2H_SERVER_URL`` (``E2H_SERVER`` is read too) and ``E2H_API_TOKEN``."""

    model_config = SettingsConfigDict(env_prefix="E2H_", extra="ignore", populate_by_name=True)

    # Only the prefixed names: another program's SERVER_URL must never redirect the client (and its token).
    server_url: ServerUrl = Field(SERVER_URL, validation_alias=AliasChoices("E2H_SERVER_URL", "E2H_SERVER"),
                                  description="The server's URL.")
    api_token: OptionalSecret = Field(None, description="The server's API token, when it sets one (writes need it).")

    @classmethod
    def resolve(cls, server_url: str | None = None, api_token: str | None = None) -> ClientSettings:
        """The environment's settings with the command line's options on top (None: not given)."""
        given = {k: v for k, v in {"server_url": server_url, "api_token": api_token}.items() if v is not None}
        return cls(**given)

    def client(self, timeout: float = 30.0):
        from e2h.client import Client

        return Client(self.server_url, token=self.api_token, timeout=timeout)
