"""Defaults every process shares, and the client's settings (CLI, dashboard, scripts). No torch.

Each process kind has one settings object read from ``E2H_*`` environment variables:
:class:`ClientSettings` here (who talks to a server), ``server.core.config.Settings`` (the
server) and ``worker.settings.WorkerSettings`` (a worker, which includes :class:`LaunchSettings`:
what a run's launch may use on this machine, read by ``e2h train`` too). A command-line option, when given,
wins over its variable; the defaults below are the only place the server's address is written.
"""

from __future__ import annotations

from pathlib import Path
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


# -- what this machine's operator lets a run's launch use ------------------------------------
# A run config names these things; this machine's operator provides them (worker.settings.WorkerSettings
# inherits these fields, and `e2h train` reads them too, its user being the operator).
ACCELERATE_CONFIGS_ENV = "E2H_ACCELERATE_CONFIGS"
ALLOW_WANDB_ENV = "E2H_ALLOW_WANDB"
# The operator's W&B settings, passed to a training child that reports to wandb, and only to one
# the operator allowed (E2H_ALLOW_WANDB); every other WANDB_* variable stays with the worker.
WANDB_OPERATOR_VARS = ("WANDB_API_KEY", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_MODE", "WANDB_BASE_URL")
EmptyIsUnsetPath = Annotated[Path | None, BeforeValidator(lambda v: None if v == "" else v)]


class LaunchSettings(BaseSettings):
    """What a run's launch may use on this machine, as its operator says (``E2H_ACCELERATE_CONFIGS``,
    ``E2H_ALLOW_WANDB``); :func:`e2h.plan.build_plan` applies them."""

    model_config = SettingsConfigDict(env_prefix="E2H_", extra="ignore")

    accelerate_configs: EmptyIsUnsetPath = Field(
        None,
        description="A directory of extra accelerate config files: a run's algorithm.distributed=config:NAME "
        "launches with <dir>/NAME.yaml. Unset: runs use only the shipped presets.",
    )
    allow_wandb: bool = Field(
        False,
        description="A run may set algorithm.report_to=[wandb]: its metrics go to Weights & Biases with this "
        "machine's WANDB_API_KEY, WANDB_PROJECT, WANDB_ENTITY, WANDB_MODE (passed to that run only).",
    )
