"""Re-check a claimed run against the worker's policy before anything runs.

The server validates what it can when a run is submitted, but what a run may touch on this
machine is for this machine's operator to say (:class:`worker.settings.WorkerSettings`).
:func:`check_run` returns the reason a run is refused, naming the field and the rule, or None.
It reads paths only to resolve them (symlinks included); it never opens a file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from worker.settings import NETNS_STRICTNESS, WorkerSettings

REMOTE_CODE_REFUSED = (
    "model.trust_remote_code is true, which runs the model repository's Python code, and this worker does "
    "not allow it (set E2H_ALLOW_TRUST_REMOTE_CODE=1 in the worker's environment to allow it)"
)


class Refused(Exception):
    """A run this worker does not train; the message is the run's error."""


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def check_run(config: dict[str, Any], settings: WorkerSettings) -> str | None:
    """Why this worker refuses ``config`` (a run's stored config), or None when it may train it."""
    try:
        _check(config, settings)
    except Refused as e:
        return str(e)
    except Exception as e:  # a config this check cannot read is not one to train (nor to crash on)
        return f"the worker could not check this run's config against its policy ({type(e).__name__})"
    return None


def _check(raw: dict[str, Any], settings: WorkerSettings) -> None:
    from e2h.config import RunConfig

    if raw.get("model", {}).get("trust_remote_code") and not settings.allow_trust_remote_code:
        raise Refused(REMOTE_CODE_REFUSED)
    try:
        # RunConfig's own rules apply here too (the grpo_kwargs allowlist, free-form limits): a run
        # stored before they existed, or written straight into the database, meets them now.
        config = RunConfig.model_validate(raw)
    except ValidationError as e:
        first = e.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        raise Refused(f"invalid config: {where + ': ' if where else ''}{msg}") from None
    _check_model(config.model.name_or_path, settings)
    _check_ceilings(config, settings)
    task = config.task.name.strip().lower()  # get_task matches names case-insensitively
    if task == "dataset":
        _check_dataset(config.task.options, settings)
    elif task == "coding":
        _check_sandbox(config.task.options, settings)


def _check_model(name: str, settings: WorkerSettings) -> None:
    from e2h.models import local_model_path

    if name.startswith("builtin:"):
        return
    local = local_model_path(name)
    if local is None:
        if not settings.allow_hub_models:
            raise Refused(f"model.name_or_path: {name!r} is a hub model id and this worker does not load hub "
                          "models (E2H_ALLOW_HUB_MODELS)")
        return
    if not _under(local, settings.allowed_model_roots()):
        raise Refused(f"model.name_or_path: {name!r} is a local path outside this worker's model roots; a run may "
                      "load builtin:tiny, a hub id or a directory under E2H_MODEL_ROOTS (set by the worker's operator)")


def _check_ceilings(config, settings: WorkerSettings) -> None:
    from e2h.config import ceiling_errors

    # The server checks its own ceilings at submit time; this worker's may be lower (a smaller
    # machine) and apply to runs stored before they changed.
    for _, message in ceiling_errors(config, settings.ceilings(), "E2H_RUN_CEILINGS"):
        raise Refused(message.replace("this server's", "this worker's"))


def _data_file_entries(data_files: Any) -> Iterator[Any]:
    if isinstance(data_files, dict):
        for value in data_files.values():
            yield from _data_file_entries(value)
    elif isinstance(data_files, (list, tuple)):
        for value in data_files:
            yield from _data_file_entries(value)
    elif data_files is not None:
        yield data_files


def _check_dataset(options: dict[str, Any], settings: WorkerSettings) -> None:
    from e2h.tasks.dataset import builder_names, local_data_path

    path = options.get("path")
    if path is None:
        return  # the task itself says what is missing
    if not isinstance(path, str):
        raise Refused(f"task.options.path: must be a string, got a {type(path).__name__}")
    roots = settings.allowed_data_roots()
    rule = "a run may read files under this worker's data roots only (E2H_DATA_ROOTS, set by the worker's operator)"
    local = local_data_path(path)
    if local is not None and not _under(local, roots):
        raise Refused(f"task.options.path: {path!r} is outside this worker's data roots; {rule}")
    builder = local is None and path in builder_names()
    if local is None and not builder and not settings.allow_hub_datasets:
        raise Refused(f"task.options.path: {path!r} is a hub dataset id and this worker does not load hub "
                      "datasets (E2H_ALLOW_HUB_DATASETS)")
    for entry in _data_file_entries(options.get("data_files")):
        text = str(entry)
        if "://" in text or "::" in text:
            raise Refused(f"task.options.data_files: {text!r} is a URL; {rule}")
        if local is None and not builder:
            # Inside a hub dataset's repository: relative, and never climbing out of it.
            if text.startswith(("/", "~")) or ".." in Path(text).parts:
                raise Refused(f"task.options.data_files: {text!r} leaves the hub dataset {path!r}; {rule}")
            continue
        base = local if local is not None and local.is_dir() else Path.cwd()
        resolved = (base / Path(text).expanduser()).resolve()
        if not _under(resolved, roots):
            raise Refused(f"task.options.data_files: {text!r} is outside this worker's data roots; {rule}")


def _check_sandbox(options: dict[str, Any], settings: WorkerSettings) -> None:
    ceilings = {
        "timeout_s": (settings.sandbox_max_timeout_s, "E2H_SANDBOX_MAX_TIMEOUT_S"),
        "memory_mb": (settings.sandbox_max_memory_mb, "E2H_SANDBOX_MAX_MEMORY_MB"),
        "max_workers": (settings.sandbox_max_workers, "E2H_SANDBOX_MAX_WORKERS"),
    }
    for field, (ceiling, setting) in ceilings.items():
        value = options.get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not value <= ceiling:
            raise Refused(f"task.options.{field}: {value} is above this worker's sandbox ceiling of {ceiling} "
                          f"({setting})")
    netns = options.get("network_namespace")
    floor = settings.sandbox_min_network_namespace
    if netns is not None and NETNS_STRICTNESS.get(netns, 0) < NETNS_STRICTNESS[floor]:
        raise Refused(f"task.options.network_namespace: {netns!r} is looser than this worker allows ({floor!r} "
                      "at least, E2H_SANDBOX_MIN_NETWORK_NAMESPACE)")
