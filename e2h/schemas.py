"""The wire: every shape the server, its client, the worker and the dashboard exchange. No torch.

One owner for the API's vocabulary. The server uses these as its request and response models,
:class:`e2h.client.Client` returns them, and the worker and the dashboard read them; the run
status vocabulary (:class:`RunStatus`) and the worker's supervision outcomes
(:class:`WorkerOutcome`) are declared here and nowhere else. Database tables live in
``server.models``; a response is built from a table row with ``model_validate(row)``.
"""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, NotRequired

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    field_validator,
    model_validator,
    with_config,
)
from typing_extensions import TypedDict

from e2h.config import GRPO_KWARGS_SECRETS, FreeJson, RunConfig, json_depth
from e2h.errors import FieldProblem

PROBABILITY_TOLERANCE = 1e-6
# Integer columns are 32-bit on PostgreSQL; SQLite's are 64-bit and Python's unbounded.
# Numbers that reach an INTEGER column or a comparison with one stay in this range, so
# an out-of-range number is a 422 instead of a database error (500).
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


# -- vocabularies ---------------------------------------------------------------------


class RunStatus(StrEnum):
    """queued -> running -> succeeded | failed | cancelled (a running run may go back to queued)."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled})

class WorkerOutcome(StrEnum):
    """How a worker's supervision of a claimed run ended (before it reports a status)."""

    done = "done"  # the training process exited by itself: its exit code decides the status
    cancelled = "cancelled"  # a cancel was requested and the process stopped
    released = "released"  # the worker is shutting down: the run goes back to the queue
    lost = "lost"  # the lease was lost: another attempt owns the run now
    failed = "failed"  # already reported failed (refused, could not start)


# -- field types ----------------------------------------------------------------------


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refused here rather than failing in the database.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (\\x00)")
    return value


def _nul_replaced(value: str) -> str:
    # Log lines and error text come from a training process's output: kept, NUL made visible.
    return value.replace("\x00", "\ufffd")


NO_NUL_PATTERN = r"^[^\x00]*$"
# The pattern only documents the rule in the schema; the validator checks it with a clear message.
NoNul = [AfterValidator(_no_nul), Field(json_schema_extra={"pattern": NO_NUL_PATTERN})]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True), *NoNul]
WorkerId = Annotated[str, StringConstraints(min_length=1, max_length=200), *NoNul]
Name = Annotated[str, StringConstraints(max_length=200), *NoNul]
OutputDir = Annotated[str, StringConstraints(max_length=4096), *NoNul]
Step = Annotated[int, Field(ge=0, le=INT32_MAX)]
Attempt = Annotated[int, Field(ge=1, le=INT32_MAX)]
ErrorText = Annotated[str, StringConstraints(max_length=100_000), AfterValidator(_nul_replaced)]
LogText = Annotated[str, StringConstraints(max_length=20_000), AfterValidator(_nul_replaced)]


def reject_non_finite(value: Any, where: str = "") -> None:
    """Raise for NaN or Infinity anywhere in a JSON value (Python's json module reads them,
    but they are not JSON: PostgreSQL refuses them and responses could not be written).

    Walked with a stack, not recursion: a body nested hundreds of levels deep must reach the
    depth checks (422), not exhaust the interpreter's recursion limit (500)."""
    stack = [(value, where)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            message = f"{path or 'value'}: {node!r} is not a finite number; JSON has no NaN or Infinity"
            raise FieldProblem(message, path) if path else ValueError(message)
        if isinstance(node, dict):
            stack.extend((item, f"{path}.{key}" if path else str(key)) for key, item in node.items())
        elif isinstance(node, list):
            stack.extend((item, f"{path}.{i}" if path else str(i)) for i, item in enumerate(node))


class _FiniteInput(BaseModel):
    """A request body whose free-form parts (config options, eval results) must be finite."""

    @model_validator(mode="before")
    @classmethod
    def _finite(cls, data: Any) -> Any:
        reject_non_finite(data)
        return data


class RunCreate(_FiniteInput):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = Field(None, description="Default: the config's output name.")
    config: RunConfig = Field(default_factory=RunConfig, description="The run's RunConfig ({} = defaults).")
    priority: int = Field(0, ge=-1_000_000, le=1_000_000, description="Higher runs first; FIFO within.")
    tags: list[Tag] = Field(default_factory=list, max_length=32)


class RunClone(_FiniteInput):
    model_config = ConfigDict(extra="forbid")

    overrides: FreeJson = Field(
        default_factory=dict,
        description='Merged into the copied config: nested ({"scheduler": {"name": "cosine"}}) '
        'or dotted keys ({"scheduler.params.min_prob": 0.05}).',
    )
    name: Name | None = Field(None, description="Default: the source name + ' (clone)'.")
    priority: int | None = Field(None, ge=-1_000_000, le=1_000_000, description="Default: the source's.")
    tags: list[Tag] | None = Field(None, max_length=32, description="Default: the source's.")


REDACTED = "[redacted: a run config never holds a secret]"
# Far deeper than a valid RunConfig (sections, then free-form fields of at most MAX_JSON_DEPTH).
STORED_CONFIG_MAX_DEPTH = 64


def _readable(config: Any) -> Any:
    """A stored config as the API returns it. Rows written before the allowlist and the depth
    limits existed may hold secrets (``hub_token``: replaced, reads are public) or nesting
    no serialiser can write (replaced by a note, so the run can still be read)."""
    if json_depth(config, STORED_CONFIG_MAX_DEPTH) > STORED_CONFIG_MAX_DEPTH:
        return {"unreadable": f"the stored config is nested more than {STORED_CONFIG_MAX_DEPTH} levels deep"}
    algorithm = config.get("algorithm") if isinstance(config, dict) else None
    kwargs = algorithm.get("grpo_kwargs") if isinstance(algorithm, dict) else None
    if not isinstance(kwargs, dict) or not any(k in kwargs for k in GRPO_KWARGS_SECRETS):
        return config
    kwargs = {k: REDACTED if k in GRPO_KWARGS_SECRETS else v for k, v in kwargs.items()}
    return {**config, "algorithm": {**algorithm, "grpo_kwargs": kwargs}}


class RunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    status: RunStatus
    priority: int
    tags: list[str]
    config: dict[str, Any]
    num_levels: int
    max_steps: int
    step: int
    snapshot_count: int
    attempt: int
    leases_lost: int
    worker_id: str | None
    lease_expires_at: datetime | None
    cancel_requested: bool
    error: str | None
    output_dir: str | None
    probabilities: list[float] | None = Field(description="Latest snapshot's probability per level.")
    metrics: dict[str, float | None] | None = Field(description="Latest snapshot's metrics.")
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    sweep_id: int | None = Field(None, description="The sweep that queued this run (GET /sweeps/{id}).")
    report: RunReport | None = Field(None, description="What the worker holding the run last reported about it.")

    @field_validator("config", mode="before")
    @classmethod
    def _redacted(cls, config: Any) -> Any:
        return _readable(config)


ERROR_LINE_CHARS = 300


def _config_name(config: Any, section: str, key: str) -> str | None:
    # A stored config is read as it is: one that no longer validates still names its parts.
    part = config.get(section) if isinstance(config, dict) else None
    value = part.get(key) if isinstance(part, dict) else None
    return value[:500] if isinstance(value, str) else None


# -- runs -------------------------------------------------------------------------------


class RunResults(BaseModel):
    """A finished run's headline figures, from its final test evaluation (E2H's format)."""

    accuracy: float | None = Field(None, description="Overall test accuracy.")
    heldout_accuracy: float | None = Field(
        None, description="Accuracy on the held-out levels (evaluated, never trained on), weighted by support.")
    reward: float | None = Field(None, description="Overall mean reward on the test set.")

    @classmethod
    def from_test(cls, results: dict[str, Any], heldout: set[str]) -> RunResults:
        """From a "test" eval's results and the result keys (``level_N``) of the held-out levels."""
        overall = results.get("overall") if isinstance(results.get("overall"), dict) else {}
        held = [results[k] for k in sorted(heldout) if isinstance(results.get(k), dict)
                and isinstance(results[k].get("accuracy"), int | float)]
        weights = [r.get("support") if isinstance(r.get("support"), int) and r.get("support") > 0 else 1 for r in held]
        heldout_accuracy = (sum(r["accuracy"] * w for r, w in zip(held, weights, strict=True)) / sum(weights)
                            if held else None)
        return cls(accuracy=_number(overall.get("accuracy")), heldout_accuracy=heldout_accuracy,
                   reward=_number(overall.get("reward_mean")))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class RunSummary(BaseModel):
    """A run in the list: what a table row shows, without the config (GET /runs/{id} has it)."""

    id: int
    name: str
    status: RunStatus
    priority: int
    tags: list[str]
    model: str | None = Field(description="config.model.name_or_path.")
    task: str | None = Field(description="config.task.name.")
    scheduler: str | None = Field(description="config.scheduler.name.")
    num_levels: int
    max_steps: int
    step: int
    snapshot_count: int
    attempt: int
    worker_id: str | None
    cancel_requested: bool
    error: str | None = Field(description=f"The error's first line, at most {ERROR_LINE_CHARS} characters.")
    probabilities: list[float] | None = Field(description="Latest snapshot's probability per level.")
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    sweep_id: int | None = Field(None, description="The sweep that queued this run.")
    results: RunResults | None = Field(None, description="From the run's final test evaluation, once it has one.")

    @classmethod
    def from_run(cls, run: Any, results: RunResults | None = None) -> RunSummary:
        """From a stored run (``server.models.Run``) and its final test's figures."""
        config = run.config
        error = run.error.strip().split("\n", 1)[0][:ERROR_LINE_CHARS] if run.error else None
        return cls(
            id=run.id, name=run.name, status=run.status, priority=run.priority, tags=run.tags,
            model=_config_name(config, "model", "name_or_path"), task=_config_name(config, "task", "name"),
            scheduler=_config_name(config, "scheduler", "name"), num_levels=run.num_levels,
            max_steps=run.max_steps, step=run.step, snapshot_count=run.snapshot_count, attempt=run.attempt,
            worker_id=run.worker_id, cancel_requested=run.cancel_requested, error=error,
            probabilities=run.probabilities, created_at=run.created_at, updated_at=run.updated_at,
            started_at=run.started_at, finished_at=run.finished_at, sweep_id=run.sweep_id, results=results,
        )


class RunsPublic(BaseModel):
    data: list[RunSummary]
    count: int


class ClaimRequest(BaseModel):
    worker_id: WorkerId
    labels: list[Tag] = Field(default_factory=list, max_length=32)
    gpus_free: int | None = Field(
        None, ge=0, le=1024,
        description="GPUs the worker has free: only runs that fit them are handed out (0: a CPU worker, which "
        "gets no vLLM run). Omitted: any run.",
    )


class ClaimResponse(BaseModel):
    run: RunPublic
    lease_expires_at: datetime


class ProcessReport(BaseModel):
    role: str = Field(max_length=32, description='"train" or "vllm".')
    command: list[Annotated[str, StringConstraints(max_length=4096)]] = Field(max_length=256)
    env: dict[str, Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=dict, description="What the plan sets (devices, ports), not the worker's environment.")


class RunReport(BaseModel):
    """What the worker holding a run says about it with every heartbeat: the one owner of
    worker-reported fields.

    The worker fills them, the server keeps the latest value of each (``runs.report``, one JSON
    column, so a new field needs no migration) and returns them as ``RunPublic.report``, and the
    run page shows them: a new field touches this class, the worker and the page. ``step`` and
    ``output_dir`` also drive the server (progress, resume), so they are kept in columns of their own.
    """

    step: Step | None = None
    output_dir: OutputDir | None = Field(None, description="Where this attempt writes (for resume).")
    processes: list[ProcessReport] | None = Field(
        None, max_length=8, description="How the worker placed the run: its launch plan's processes (e2h.plan).")


class HeartbeatRequest(RunReport):
    model_config = ConfigDict(extra="forbid")

    worker_id: WorkerId
    attempt: Attempt = Field(description="The claimed run's attempt; fences stale workers.")

    def report(self) -> RunReport:
        return RunReport.model_validate(self.model_dump(include=set(RunReport.model_fields)))


class HeartbeatResponse(BaseModel):
    cancel_requested: bool
    lease_expires_at: datetime


class ReleaseRequest(BaseModel):
    worker_id: WorkerId
    attempt: Attempt = Field(description="The claimed run's attempt.")
    output_dir: OutputDir | None = Field(None, description="Where the next attempt resumes from.")


class FinishRequest(BaseModel):
    worker_id: WorkerId
    attempt: Attempt = Field(description="The claimed run's attempt.")
    status: RunStatus
    error: ErrorText | None = None
    output_dir: OutputDir | None = None

    @model_validator(mode="after")
    def _terminal(self) -> FinishRequest:
        if not self.status.terminal:
            raise FieldProblem("status: must be succeeded, failed or cancelled", "status")
        return self


@with_config(ConfigDict(extra="forbid", allow_inf_nan=False))
class LevelSnapshot(TypedDict):
    """One level of a snapshot. Numbers must be finite (NaN and Infinity are refused)."""

    level: Annotated[int, Field(ge=0)]
    probability: Annotated[float, Field(ge=0.0, le=1.0)]
    count: NotRequired[Annotated[int, Field(ge=0)]]
    reward_mean: NotRequired[float | None]
    reward_var: NotRequired[float | None]
    components: NotRequired[dict[str, float | None] | None]


# TypedDicts rather than models: validating into plain dicts takes half the time, and
# ingestion validates thousands of snapshots a second.
@with_config(ConfigDict(extra="forbid", allow_inf_nan=False))
class SnapshotIn(TypedDict):
    """One logged step of the curriculum (DESIGN.md section 7); stored as validated."""

    step: Step
    time: NotRequired[float | None]
    scheduler: Annotated[str, Field(max_length=64)]
    levels: Annotated[list[LevelSnapshot], Field(min_length=1, max_length=256)]
    metrics: NotRequired[dict[str, float | None]]


SNAPSHOT_LIST = TypeAdapter(list[SnapshotIn])
SNAPSHOT = TypeAdapter(SnapshotIn)

# One series of a run's history, by name (``GET /runs/{id}/snapshots.csv?series=``): a level
# field (one column per level), ``components.NAME`` (a level's score component, one column per
# level) or ``metrics.NAME`` (one column).
LEVEL_SERIES = ("probability", "count", "reward_mean", "reward_var")
SERIES_PATTERN = r"^(probability|count|reward_mean|reward_var|(components|metrics)\.[A-Za-z0-9_./:-]{1,128})$"


def series_path(name: str) -> tuple[bool, tuple[str, ...]]:
    """A series name (matching ``SERIES_PATTERN``) -> (one column per level?, its JSON path:
    inside each level for a per-level series, inside the snapshot for a metric)."""
    if name in LEVEL_SERIES:
        return True, (name,)
    group, key = name.split(".", 1)
    return group == "components", (group, key)


def snapshot_errors(snapshots: list[SnapshotIn]) -> list[dict[str, Any]]:
    """What a field's own type cannot check: probabilities sum to 1, each level once.

    -> pydantic-style errors located in the batch. A plain loop after validation: a
    validator callback per snapshot cost more than these checks themselves.
    """
    errors = []
    for i, snapshot in enumerate(snapshots):
        levels = snapshot["levels"]
        total = sum([lv["probability"] for lv in levels])  # 5-ish terms: rounding is far below 1e-6
        if abs(total - 1.0) > PROBABILITY_TOLERANCE:
            msg = f"levels: probabilities sum to {total!r}, expected 1 within {PROBABILITY_TOLERANCE}"
            errors.append({"loc": (i, "levels"), "msg": f"Value error, {msg}", "type": "value_error"})
        if len({lv["level"] for lv in levels}) != len(levels):
            errors.append(
                {"loc": (i, "levels"), "msg": "Value error, levels: each level may appear once", "type": "value_error"}
            )
    return errors


class IngestResult(BaseModel):
    accepted: int
    duplicates: int


class EvalIn(_FiniteInput):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    step: Step
    name: Annotated[str, *NoNul] = Field(
        "eval", min_length=1, max_length=64, description='"eval" (periodic) or "test" (final).'
    )
    results: dict[str, Any] = Field(
        description='E2H\'s format: {"overall": {"accuracy", "support"}, "level_0": {...}, ...}'
    )


class EvalPublic(EvalIn):
    id: int
    created_at: datetime


class LogLinesIn(BaseModel):
    lines: list[LogText]


class LogLinePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    time: datetime
    line: str


class LogsPublic(BaseModel):
    data: list[LogLinePublic]
    next_after: int = Field(description="Pass as ?after= to get the lines that follow.")


# -- sampled completions ----------------------------------------------------------------

# The longest prompt or completion text a sampled completion carries; the trainer cuts longer
# ones to it (their middle, so the question and the answer stay) and marks them ``truncated``.
COMPLETION_TEXT_CHARS = 4000
MAX_LEVEL = 255  # scheduler level indices a query may name
CompletionText = Annotated[str, StringConstraints(max_length=COMPLETION_TEXT_CHARS), AfterValidator(_nul_replaced)]
RewardName = Annotated[str, StringConstraints(min_length=1, max_length=200), *NoNul]


class CompletionIn(BaseModel):
    """One completion of a logged step's sample (a line of the output dir's ``completions.jsonl``,
    posted by the worker); idempotent on (run, step, level, index)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    step: Step
    level: int = Field(ge=0, le=MAX_LEVEL, description="Scheduler level (an index into task.train_levels).")
    index: int = Field(ge=0, le=MAX_LEVEL, description="Its place in the step's sample of the level.")
    prompt: CompletionText
    completion: CompletionText
    reward: float | None = Field(None, description="The total, as TRL weighs and sums the reward functions; "
                                 "null when none of them scored it.")
    rewards: dict[RewardName, float | None] = Field(
        default_factory=dict, max_length=16, description="Each reward function's reward, by name.")
    advantage: float | None = Field(None, description="GRPO's advantage of the completion within its group.")
    truncated: bool = Field(False, description=f"The prompt or the completion was longer than "
                            f"{COMPLETION_TEXT_CHARS} characters: its middle was cut.")


class CompletionPublic(CompletionIn):
    model_config = ConfigDict(from_attributes=True)


class CompletionsPublic(BaseModel):
    step: int | None = Field(description="The step returned: the one asked for, else the latest one stored.")
    steps: list[int] = Field(description="Every step with stored completions (of the level, when one is "
                             "asked for), ascending.")
    data: list[CompletionPublic] = Field(description="By level, then index.")


class LevelSeries(BaseModel):
    level: int
    probability: list[float | None]
    reward_mean: list[float | None]
    reward_var: list[float | None]
    count: list[int | None]
    components: dict[str, list[float | None]]


class SnapshotSeries(BaseModel):
    steps: list[int]
    time: list[float | None]
    levels: list[LevelSeries]
    metrics: dict[str, list[float | None]]
    total: int = Field(description="Snapshots after after_step before bucketing.")


class WorkerPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    labels: list[str]
    run_id: int | None
    first_seen_at: datetime
    last_seen_at: datetime


class SchedulerInfo(BaseModel):
    name: str
    description: str
    params_schema: dict[str, Any]


class TaskInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    description: str
    levels: list[int] = Field(description="Default training levels, easiest first (scheduler level i).")
    heldout_levels: list[int] = Field(description="Held-out levels: evaluated, never trained on.")
    test_levels: list[int]
    max_reward: float
    options: list[str] = Field(description="The task's option names (task.options).")
    options_schema: dict[str, Any] = Field(description="JSON schema of task.options (drives the launch form).")


class RunLimits(BaseModel):
    """What this server accepts in a RunConfig beyond its JSON schema."""

    ceilings: dict[str, float] = Field(description="Most allowed per resource field (E2H_RUN_CEILINGS).")
    grpo_kwargs: list[str] = Field(description="The trl.GRPOConfig fields algorithm.grpo_kwargs may set.")
    max_json_depth: int = Field(description="Deepest nesting of a free-form field (task.options, ...).")
    max_json_bytes: int = Field(description="Largest free-form field, as JSON text.")


class Health(BaseModel):
    status: str
    database: str
    version: str


# -- error bodies (documented in OpenAPI; see server/api/responses.py) ----------------


class ErrorMessage(BaseModel):
    detail: str


class FieldError(BaseModel):
    type: str
    loc: list[str | int]
    msg: str
    field: str = Field(description="Dotted name of what is wrong, e.g. config.scheduler.params.min_prob.")


class ValidationErrors(BaseModel):
    detail: list[FieldError]
