"""Server settings: the one place environment variables (prefix ``E2H_``) are read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from e2h.config import DEFAULT_CEILINGS, checked_ceilings


class Settings(BaseSettings):
    """Everything the server can be told from the environment (``E2H_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix="E2H_", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Where the default SQLite database lives.")
    database_url: str | None = Field(
        None,
        description="Any SQLAlchemy URL; default sqlite:///<data_dir>/e2h.db. "
        "Use PostgreSQL (postgresql+psycopg://...) when several machines share the server's data.",
    )
    worker_token: SecretStr | None = Field(
        None, description="Bearer token the worker endpoints require; unset = open, loopback only."
    )
    api_token: SecretStr | None = Field(
        None, description="When set, every other write (POST /runs, cancel, clone, delete) requires it."
    )
    lease_seconds: float = Field(60.0, gt=0, description="A claim's lease; each heartbeat extends it.")
    max_attempts: int = Field(3, ge=1, description="Lease expiries after which a run fails instead of requeueing.")
    reaper_interval_seconds: float = Field(5.0, gt=0, description="How often expired leases are reaped.")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Larger request bodies get 413.")
    max_batch: int = Field(
        1000, ge=1, description="Most snapshots, evals, completions or log lines per request (413 above).")
    allow_trust_remote_code: bool = Field(
        False,
        description="Accept runs with model.trust_remote_code=true, which run the model repository's Python "
        "code on the workers (each worker must allow it too). Off: POST /runs and clone answer 422.",
    )
    run_ceilings: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_CEILINGS),
        description="Ceilings on a run's resource fields, as JSON {dotted field: most allowed}; the fields given "
        "replace their defaults (e2h.config.DEFAULT_CEILINGS), e.g. E2H_RUN_CEILINGS="
        "'{\"algorithm.max_completion_length\": 1024}'. POST /runs and clone answer 422 above them.",
    )
    events_poll_seconds: float = Field(
        0.5, gt=0, description="SSE re-reads the database this often (writes by other server processes)."
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        ["http://127.0.0.1:8501", "http://localhost:8501"],
        description="Comma-separated browser origins (scheme://host[:port]) besides the server's own whose "
        "requests are answered; any other Origin gets 403. Default: the dashboard's default address (the "
        "dashboard itself calls the API from Python and sends no Origin).",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        [],
        description="Comma-separated Host names answered on a loopback connection besides localhost, "
        "127.0.0.1 and [::1] (e.g. the name a reverse proxy on this machine forwards); others get 421.",
    )
    max_event_streams: int = Field(64, ge=1, description="Most concurrent SSE streams (503 above).")
    header_timeout_seconds: float = Field(
        10.0, gt=0, description="A connection that has not sent a complete request head by then is closed."
    )
    body_timeout_seconds: float = Field(
        30.0, gt=0, description="Longest wait for the next chunk of a request body (408 after)."
    )
    keep_alive_seconds: int = Field(5, ge=1, description="An idle keep-alive connection is closed after this.")
    max_snapshot_keys: int = Field(
        256, ge=1, description="Most metric keys per snapshot, and component keys per level (422 above)."
    )
    max_snapshot_key_length: int = Field(200, ge=1, description="Longest metric or component name (422 above).")
    max_completion_steps: int = Field(
        200, ge=1, description="Sampled completions are kept for this many of a run's latest steps (older ones "
        "are dropped as new ones arrive).")

    @field_validator("allowed_origins", "allowed_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, v: object) -> object:
        if isinstance(v, str):
            return [part.strip().rstrip("/").lower() for part in v.split(",") if part.strip()]
        return v

    @field_validator("run_ceilings")
    @classmethod
    def _known_ceilings(cls, v: dict[str, float]) -> dict[str, float]:
        return {**DEFAULT_CEILINGS, **checked_ceilings(v)}

    @field_validator("worker_token", "api_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        # `E2H_API_TOKEN= e2h server` must not mean "the token is the empty string".
        return None if v == "" else v

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'e2h.db').resolve()}"
