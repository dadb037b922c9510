"""What a worker's operator allows its runs to do, and what the worker keeps to itself.

A run config comes from whoever can reach ``POST /runs``; the worker acts on it with its own
files, environment and credentials. So the worker's operator decides, here, which local
files a run may read, which models it may load, how loose a coding run's sandbox may be and
how large a run may get (:mod:`worker.policy` checks a claimed run against these settings
before training). Two more things follow from the settings: the training child's
environment (:func:`child_environment`: no tokens, hub credentials only when allowed) and one
redaction step (:class:`Redactor`) that every text the worker posts passes through.

Every field is read from the environment with the ``E2H_`` prefix (``E2H_DATA_ROOTS``,
``E2H_RUN_CEILINGS`` ...). Path lists take a JSON list or ``os.pathsep``-separated paths.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from e2h.settings import SERVER_URL, WANDB_OPERATOR_VARS, LaunchSettings, OptionalSecret, ServerUrl

REDACTED = "[redacted]"
MIN_SECRET_CHARS = 8  # shorter values ("1", "true", a port) would redact ordinary text
# Names of variables that hold credentials: never passed to the training child (hub tokens only
# when the operator opts in), and their values are redacted from what the worker posts.
SECRET_NAME = re.compile(r"TOKEN|SECRET|KEY|PASSWORD|PASSWD|CREDENTIAL|AUTH|COOKIE|SESSION", re.IGNORECASE)
HUB_CREDENTIAL_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_API_TOKEN")
# The E2H_* variables the training child reads (e2h.train, e2h.plan); every other one (tokens,
# database URLs) stays here. tests/worker/test_policy.py fails when e2h/ names one not listed.
CHILD_E2H_VARS = frozenset({
    "E2H_CPU_THREADS", "E2H_TRAIN_LOG_CAPTURED", "E2H_RUN_NAME",
    "E2H_VLLM_SERVE_COMMAND", "E2H_VLLM_SERVER_PORT", "E2H_VLLM_GROUP_PORT",
})
_URL_PASSWORD = re.compile(r"://[^/\s:@]*:([^/\s@]+)@")
NETNS_STRICTNESS = {"off": 0, "auto": 1, "require": 2}

PathList = Annotated[list[Path], NoDecode]


class WorkerSettings(LaunchSettings):
    """The worker's settings: connection, secrets and the policy its runs must follow (with
    :class:`e2h.settings.LaunchSettings`' accelerate_configs and allow_wandb, which the launch plan applies)."""

    model_config = SettingsConfigDict(env_prefix="E2H_", extra="ignore")

    # -- connection and secrets ---------------------------------------------------------
    server_url: ServerUrl = Field(SERVER_URL, description="Server URL (the default of --server).")
    worker_token: OptionalSecret = Field(None, description="Bearer token for the worker API (the default of --token).")
    api_token: OptionalSecret = Field(
        None, description="The server's API token, when this machine has one: never given to runs, always redacted."
    )
    data_dir: Path = Field(Path("data"), description="The data dir; data_roots defaults to its datasets/ folder.")

    # -- what a run may read and load ----------------------------------------------------
    data_roots: PathList | None = Field(
        None,
        description="Directories whose files a `dataset` run may read (task.options.path and data_files); "
        "default: <data_dir>/datasets. Anything else on this machine is refused.",
    )
    allow_hub_datasets: bool = Field(True, description="A `dataset` run may name a hub dataset id.")
    model_roots: PathList = Field(
        [],
        description="Directories a run's model.name_or_path may name; default: none (builtin:tiny and hub ids only).",
    )
    allow_hub_models: bool = Field(True, description="A run may name a hub model id.")
    allow_trust_remote_code: bool = Field(
        False, description="A run may set model.trust_remote_code (runs the model repository's Python here)."
    )
    pass_hub_credentials: bool = Field(
        False,
        description="Give the training child this machine's hub login (HF_TOKEN, the stored token file). Off: "
        "a run can neither push with nor read private repositories through the worker's account.",
    )

    # -- ceilings ------------------------------------------------------------------------
    sandbox_max_timeout_s: float = Field(10.0, gt=0, description="Most a coding run's timeout_s may be.")
    sandbox_max_memory_mb: int = Field(1024, ge=64, description="Most a coding run's memory_mb may be.")
    sandbox_max_workers: int = Field(8, ge=1, description="Most sandbox processes a coding run may run at once.")
    sandbox_min_network_namespace: Literal["off", "auto", "require"] = Field(
        "auto", description="The loosest network_namespace a coding run may ask for (off < auto < require)."
    )
    # -- devices and the managed vLLM server (issue 18) -------------------------------------
    vllm_health_deadline_s: float = Field(
        900.0, gt=0, description="How long a run's managed vLLM server may take to answer /health before the run fails."
    )
    run_ceilings: dict[str, float] = Field(
        default_factory=dict,
        description="Ceilings on a run's resource fields, as JSON {dotted field: most allowed}; the fields given "
        "replace their defaults (e2h.config.DEFAULT_CEILINGS: num_processes, batch size, generations, lengths ...). "
        "The same variable as the server's, so `e2h up` enforces one set of ceilings on both sides.",
    )

    @field_validator("data_roots", "model_roots", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part for part in text.split(os.pathsep) if part.strip()]
        return value

    @field_validator("run_ceilings")
    @classmethod
    def _known_ceilings(cls, value: dict[str, float]) -> dict[str, float]:
        from e2h.config import checked_ceilings

        return checked_ceilings(value)

    def ceilings(self) -> dict[str, float]:
        from e2h.config import DEFAULT_CEILINGS

        return {**DEFAULT_CEILINGS, **self.run_ceilings}

    def allowed_data_roots(self) -> list[Path]:
        roots = self.data_roots if self.data_roots is not None else [self.data_dir / "datasets"]
        return [Path(root).expanduser().resolve() for root in roots]

    def allowed_model_roots(self) -> list[Path]:
        return [Path(root).expanduser().resolve() for root in self.model_roots]


def _is_hub_credential(name: str) -> bool:
    return name.upper() in HUB_CREDENTIAL_VARS or name.upper().startswith("HF_OIDC_")


def child_environment(settings: WorkerSettings, environ: Mapping[str, str], output_dir: Path,
                      wandb: bool = False) -> dict[str, str]:
    """The training child's environment: the worker's, minus every credential.

    Dropped: E2H_* variables other than the ones training reads, variables whose name looks
    like a credential (``*TOKEN*``, ``*KEY*``, ``*SECRET*``, ``*PASSWORD*`` ...) and values that
    carry a password in a URL. Hub credentials stay only with ``pass_hub_credentials``; without
    it the hub's stored-token file is pointed at a path that does not exist, so a run cannot use
    this machine's ``huggingface-cli login`` either. WANDB_* variables are dropped too, except
    the operator's W&B settings (``WANDB_OPERATOR_VARS``, the API key included) for a run that
    reports to wandb (``wandb``) on a worker whose operator allows it (``allow_wandb``).
    """
    pass_wandb = wandb and settings.allow_wandb
    env: dict[str, str] = {}
    for name, value in environ.items():
        if name.upper().startswith("E2H_") and name.upper() not in CHILD_E2H_VARS:
            continue
        if name.upper().startswith("WANDB_"):
            if pass_wandb and name.upper() in WANDB_OPERATOR_VARS:
                env[name] = value
            continue
        if _is_hub_credential(name):
            if settings.pass_hub_credentials:
                env[name] = value
            continue
        if SECRET_NAME.search(name) or _URL_PASSWORD.search(value):
            continue
        env[name] = value
    if not settings.pass_hub_credentials:
        env["HF_TOKEN_PATH"] = str(Path(output_dir) / ".no-hub-token")
        env["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
    env.update(E2H_TRAIN_LOG_CAPTURED="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    return env


def _stored_hub_token(environ: Mapping[str, str]) -> str | None:
    """The token of this machine's hub login (huggingface_hub's token file), if there is one."""
    if environ.get("HF_TOKEN_PATH"):
        path = Path(environ["HF_TOKEN_PATH"])
    else:
        home = Path(environ.get("HF_HOME") or Path(environ.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface")
        path = home / "token"
    try:
        return path.expanduser().read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def secret_values(settings: WorkerSettings, environ: Mapping[str, str]) -> set[str]:
    """Every value the worker must never post: its tokens, hub tokens, credential-named variables'
    values and passwords in URLs, each at least ``MIN_SECRET_CHARS`` long."""
    found = {settings.worker_token, settings.api_token, _stored_hub_token(environ)}
    for name, value in environ.items():
        if SECRET_NAME.search(name) or _is_hub_credential(name):
            found.add(value)
        found.update(_URL_PASSWORD.findall(value))
    return {v.strip() for v in found if v and len(v.strip()) >= MIN_SECRET_CHARS}


class Redactor:
    """Replaces the values of the worker's secrets with ``[redacted]`` in text and JSON bodies."""

    def __init__(self, secrets: set[str]):
        # Longest first: a secret that contains another is replaced whole.
        self.secrets = sorted(secrets, key=len, reverse=True)

    @classmethod
    def for_worker(cls, settings: WorkerSettings, environ: Mapping[str, str] | None = None) -> Redactor:
        return cls(secret_values(settings, os.environ if environ is None else environ))

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def json(self, value: Any) -> Any:
        """A copy of a JSON-able value with every string (keys too) redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.json(k): self.json(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.json(v) for v in value]
        return value
