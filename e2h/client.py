"""Typed HTTP client for the E2H server (httpx, synchronous). No torch.

Researchers script experiments with it; the worker and the dashboard talk to the server
only through it. Answers come back as the wire models of :mod:`e2h.schemas` (the server's own
response models); every non-2xx answer raises an :class:`APIError` subclass carrying the
server's ``detail`` message.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from e2h.schemas import (
    ClaimResponse,
    CompletionsPublic,
    EvalPublic,
    Health,
    HeartbeatResponse,
    IngestResult,
    LogsPublic,
    RunPublic,
    RunReport,
    RunsPublic,
    SchedulerInfo,
    SnapshotSeries,
    TaskInfo,
)
from e2h.settings import SERVER_URL
from e2h.sweeps import SweepDetail, SweepPublic, SweepsPublic, tidy_rows

Model = TypeVar("Model", bound=BaseModel)
_EVALS = TypeAdapter(list[EvalPublic])
_SCHEDULERS = TypeAdapter(list[SchedulerInfo])
_TASKS = TypeAdapter(list[TaskInfo])


class APIError(Exception):
    """The server answered with an error; ``status_code`` and ``detail`` say which."""

    def __init__(self, status_code: int, detail: Any, method: str = "", url: str = ""):
        self.status_code = status_code
        self.detail = detail
        message = detail if isinstance(detail, str) else json.dumps(detail)
        super().__init__(f"{status_code} {method} {url}: {message}".strip())


class Unauthorized(APIError):
    """401/403: missing or wrong token."""


class NotFound(APIError):
    """404: unknown run."""


class Conflict(APIError):
    """409: wrong state (e.g. cancel a finished run), or a worker that lost its lease."""


class PayloadTooLarge(APIError):
    """413: body or batch over the server's limit."""


class ValidationFailed(APIError):
    """422: invalid input; ``detail`` names the field."""


class ServerUnavailable(APIError):
    """The server could not be reached, or answered 5xx."""


_ERRORS = {401: Unauthorized, 403: Unauthorized, 404: NotFound, 409: Conflict, 413: PayloadTooLarge,
           422: ValidationFailed}


class Client:
    """``Client(url, token=...)`` (default: this machine's server); use as a context manager or call close()."""

    def __init__(self, base_url: str = SERVER_URL, token: str | None = None, timeout: float = 30.0):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing -----------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if method.upper() not in ("GET", "HEAD") and not {"json", "content", "data", "files"} & kwargs.keys():
            # The server refuses writes that are not JSON (web pages cannot forge it); a
            # bodiless cancel or delete says it is JSON too.
            kwargs["headers"] = {"Content-Type": "application/json", **(kwargs.get("headers") or {})}
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise ServerUnavailable(0, f"cannot reach {self.base_url}: {e}", method, path) from e
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except (ValueError, AttributeError):
                detail = response.text
            cls = ServerUnavailable if response.status_code >= 500 else _ERRORS.get(response.status_code, APIError)
            raise cls(response.status_code, detail, method, path)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return None if response.status_code == 204 or not response.content else response.json()

    def _model(self, model: type[Model], method: str, path: str, **kwargs: Any) -> Model:
        return model.model_validate_json(self.request(method, path, **kwargs).content)

    # -- runs -------------------------------------------------------------------------

    def health(self) -> Health:
        return self._model(Health, "GET", "/healthz")

    def submit(self, config: dict | None = None, name: str | None = None, priority: int = 0,
               tags: list[str] | None = None) -> RunPublic:
        """Queue a run; ``config`` is a RunConfig dict ({} = the defaults)."""
        body: dict[str, Any] = {"config": config or {}, "priority": priority, "tags": tags or []}
        if name is not None:
            body["name"] = name
        return self._model(RunPublic, "POST", "/runs", json=body)

    def list_runs(self, status: str | None = None, tag: str | None = None, limit: int = 50,
                  offset: int = 0) -> RunsPublic:
        params = {k: v for k, v in {"status": status, "tag": tag, "limit": limit, "offset": offset}.items()
                  if v is not None}
        return self._model(RunsPublic, "GET", "/runs", params=params)

    def get(self, run_id: int) -> RunPublic:
        return self._model(RunPublic, "GET", f"/runs/{run_id}")

    def cancel(self, run_id: int) -> RunPublic:
        return self._model(RunPublic, "POST", f"/runs/{run_id}/cancel")

    def clone(self, run_id: int, overrides: dict | None = None, **fields: Any) -> RunPublic:
        return self._model(RunPublic, "POST", f"/runs/{run_id}/clone", json={"overrides": overrides or {}, **fields})

    def delete(self, run_id: int) -> None:
        self._json("DELETE", f"/runs/{run_id}")

    def history(self, run_id: int, after_step: int | None = None, max_points: int = 1000) -> SnapshotSeries:
        """Columnar, bucketed snapshot history (see ``GET /runs/{id}/snapshots``)."""
        params: dict[str, Any] = {"max_points": max_points}
        if after_step is not None:
            params["after_step"] = after_step
        return self._model(SnapshotSeries, "GET", f"/runs/{run_id}/snapshots", params=params)

    def history_rows(self, run_id: int, after_step: int | None = None, max_points: int = 1000) -> list[dict]:
        """One row per (step, level): step, level, probability, reward_mean, reward_var, count."""
        series = self.history(run_id, after_step, max_points)
        rows = []
        for lv in series.levels:
            for i, step in enumerate(series.steps):
                row = {"step": step, "level": lv.level, "probability": lv.probability[i],
                       "reward_mean": lv.reward_mean[i], "reward_var": lv.reward_var[i], "count": lv.count[i]}
                row.update({name: values[i] for name, values in lv.components.items()})
                rows.append(row)
        return sorted(rows, key=lambda r: (r["step"], r["level"]))

    def history_frame(self, run_id: int, after_step: int | None = None, max_points: int = 1000):
        """``history_rows`` as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.history_rows(run_id, after_step, max_points))

    def export_snapshots(self, run_id: int, after_step: int | None = None,
                         level: int | None = None) -> Iterator[dict]:
        """Every stored snapshot of a run, unbucketed, streamed (``GET /runs/{id}/snapshots.ndjson``):
        memory on both sides stays bounded however long the run. ``level``: only that level."""
        params = {k: v for k, v in {"after_step": after_step, "level": level}.items() if v is not None}
        path = f"/runs/{run_id}/snapshots.ndjson"
        try:
            with self._http.stream("GET", path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _ERRORS.get(response.status_code, APIError)(response.status_code, response.text, "GET", path)
                for line in response.iter_lines():
                    if line:
                        yield json.loads(line)
        except httpx.TransportError as e:
            raise ServerUnavailable(0, f"export from {self.base_url} broke: {e}") from e

    def snapshots_frame(self, run_id: int, level: int | None = None):
        """The full history as a tidy pandas DataFrame: one row per (step, level), with the step's
        metrics and the level's components as columns (``history_frame`` is the bucketed view)."""
        import pandas as pd

        rows = []
        for snap in self.export_snapshots(run_id, level=level):
            base = {"step": snap["step"], "time": snap.get("time"), **(snap.get("metrics") or {})}
            for lv in snap["levels"]:
                rows.append({**base, "level": lv["level"], "probability": lv["probability"],
                             "reward_mean": lv.get("reward_mean"), "reward_var": lv.get("reward_var"),
                             "count": lv.get("count"), **(lv.get("components") or {})})
        return pd.DataFrame(rows)

    def series_frame(self, run_id: int, series: str, after_step: int | None = None):
        """One series of the full history as a pandas DataFrame indexed by step
        (``GET /runs/{id}/snapshots.csv``): ``probability``, ``count``, ``reward_mean``,
        ``reward_var`` or ``components.NAME`` give a ``level_N`` column per level,
        ``metrics.NAME`` one column; missing values are NaN. Cheap for long runs: the server
        reads the values out of its stored JSON, never a whole snapshot."""
        import pandas as pd

        params = {"series": series, **({} if after_step is None else {"after_step": after_step})}
        text = self.request("GET", f"/runs/{run_id}/snapshots.csv", params=params).text
        return pd.read_csv(io.StringIO(text), index_col="step")

    def evals(self, run_id: int) -> list[EvalPublic]:
        return _EVALS.validate_json(self.request("GET", f"/runs/{run_id}/evals").content)

    def logs(self, run_id: int, after: int = 0, limit: int = 1000) -> LogsPublic:
        return self._model(LogsPublic, "GET", f"/runs/{run_id}/logs", params={"after": after, "limit": limit})

    def completions(self, run_id: int, level: int | None = None, step: int | None = None,
                    limit: int = 100) -> CompletionsPublic:
        """The sampled completions of one step (default: the latest stored), all levels or one
        (scheduler index), and the steps that have some (``.steps``)."""
        params = {k: v for k, v in {"level": level, "step": step, "limit": limit}.items() if v is not None}
        return self._model(CompletionsPublic, "GET", f"/runs/{run_id}/completions", params=params)

    def schedulers(self) -> list[SchedulerInfo]:
        return _SCHEDULERS.validate_json(self.request("GET", "/schedulers").content)

    def tasks(self) -> list[TaskInfo]:
        return _TASKS.validate_json(self.request("GET", "/tasks").content)

    def presets(self) -> dict:
        return self._json("GET", "/presets")

    def wait(self, run_id: int, timeout: float | None = None, poll: float = 1.0, progress: bool = False) -> RunPublic:
        """Block until the run finishes; returns it. ``progress`` shows a rich progress bar."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = None
        if progress:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            bar = Progress(TextColumn("run {task.fields[run_id]} {task.fields[status]}"), BarColumn(),
                           TextColumn("{task.completed}/{task.total} steps"), TimeRemainingColumn())
            bar.start()
        try:
            task = None
            while True:
                run = self.get(run_id)
                if bar is not None:
                    if task is None:
                        task = bar.add_task("run", total=run.max_steps, run_id=run_id, status=run.status)
                    bar.update(task, completed=run.step, status=run.status)
                if run.status.terminal:
                    return run
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"run {run_id} still {run.status} after {timeout} s")
                time.sleep(poll)
        finally:
            if bar is not None:
                bar.stop()

    def events(self, run_id: int, last_event_id: str | None = None) -> Iterator[dict]:
        """Server-Sent Events of a run: dicts with ``event``, ``id`` and parsed ``data``."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        try:
            with self._http.stream("GET", f"/runs/{run_id}/events", headers=headers, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _ERRORS.get(response.status_code, APIError)(
                        response.status_code, response.text, "GET", f"/runs/{run_id}/events")
                event: dict[str, Any] = {}
                for line in response.iter_lines():
                    if not line:
                        if "data" in event:
                            event["data"] = _parse(event["data"])
                            yield event
                        event = {}
                    elif line.startswith(":"):
                        continue
                    else:
                        field, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if field == "data" and "data" in event:
                            event["data"] += "\n" + value
                        elif field in ("event", "id", "data"):
                            event[field] = value
        except httpx.TransportError as e:
            raise ServerUnavailable(0, f"event stream from {self.base_url} broke: {e}") from e

    # -- worker protocol (bearer E2H_WORKER_TOKEN) ----------------------------------------------

    def claim(self, worker_id: str, labels: list[str] | None = None,
              gpus_free: int | None = None) -> ClaimResponse | None:
        """Claim the next queued run that fits ``gpus_free`` GPUs (None: any): {run, lease_expires_at},
        or None when no queued run fits."""
        body = {"worker_id": worker_id, "labels": labels or []}
        if gpus_free is not None:
            body["gpus_free"] = gpus_free
        response = self.request("POST", "/workers/claim", json=body)
        return ClaimResponse.model_validate_json(response.content) if response.content else None

    def heartbeat(self, run_id: int, worker_id: str, attempt: int, report: RunReport | None = None,
                  **fields: Any) -> HeartbeatResponse:
        """Renew the lease, with what the worker reports (a RunReport, or its fields: ``step=3``)."""
        report = report or RunReport(**fields)
        body = {"worker_id": worker_id, "attempt": attempt, **report.model_dump(mode="json", exclude_none=True)}
        return self._model(HeartbeatResponse, "POST", f"/runs/{run_id}/heartbeat", json=body)

    def post_snapshots(self, run_id: int, snapshots: list[dict], worker_id: str, attempt: int) -> IngestResult:
        return self._model(IngestResult, "POST", f"/runs/{run_id}/snapshots", json=snapshots,
                           params={"worker_id": worker_id, "attempt": attempt})

    def post_evals(self, run_id: int, evals: list[dict], worker_id: str, attempt: int) -> IngestResult:
        return self._model(IngestResult, "POST", f"/runs/{run_id}/evals", json=evals,
                           params={"worker_id": worker_id, "attempt": attempt})

    def post_completions(self, run_id: int, completions: list[dict], worker_id: str, attempt: int) -> IngestResult:
        return self._model(IngestResult, "POST", f"/runs/{run_id}/completions", json=completions,
                           params={"worker_id": worker_id, "attempt": attempt})

    def post_logs(self, run_id: int, lines: list[str], worker_id: str, attempt: int) -> IngestResult:
        return self._model(IngestResult, "POST", f"/runs/{run_id}/logs", json={"lines": lines},
                           params={"worker_id": worker_id, "attempt": attempt})

    def release(self, run_id: int, worker_id: str, attempt: int, output_dir: str | None = None) -> RunPublic:
        """Hand a claimed run back to the queue (the worker is shutting down); it resumes later."""
        body = {"worker_id": worker_id, "attempt": attempt, "output_dir": output_dir}
        return self._model(RunPublic, "POST", f"/runs/{run_id}/release", json=body)

    def finish(self, run_id: int, worker_id: str, attempt: int, status: str, error: str | None = None,
               output_dir: str | None = None) -> RunPublic:
        body = {"worker_id": worker_id, "attempt": attempt, "status": status, "error": error,
                "output_dir": output_dir}
        return self._model(RunPublic, "POST", f"/runs/{run_id}/finish", json=body)

    # -- sweeps: a base config x a grid of dotted overrides x seeds (e2h.sweeps) -----------------

    def submit_sweep(self, config: dict | None = None, grid: dict[str, list] | None = None,
                     seeds: list[int] | None = None, name: str | None = None, priority: int = 0,
                     tags: list[str] | None = None, baseline: dict[str, Any] | None = None) -> SweepPublic:
        """Queue every grid point x seed, e.g. ``grid={"scheduler.name": ["balanced", "sec"]}, seeds=[42, 1]``."""
        body: dict[str, Any] = {"config": config or {}, "grid": grid or {}, "priority": priority, "tags": tags or []}
        for key, value in (("seeds", seeds), ("name", name), ("baseline", baseline)):
            if value is not None:
                body[key] = value
        return self._model(SweepPublic, "POST", "/sweeps", json=body)

    def list_sweeps(self, limit: int = 50, offset: int = 0) -> SweepsPublic:
        return self._model(SweepsPublic, "GET", "/sweeps", params={"limit": limit, "offset": offset})

    def sweep(self, sweep_id: int, baseline: int | None = None) -> SweepDetail:
        """The sweep, its runs and its summary (``baseline``: the group index differences are taken against)."""
        params = {} if baseline is None else {"baseline": baseline}
        return self._model(SweepDetail, "GET", f"/sweeps/{sweep_id}", params=params)

    def cancel_sweep(self, sweep_id: int) -> SweepPublic:
        return self._model(SweepPublic, "POST", f"/sweeps/{sweep_id}/cancel")

    def delete_sweep(self, sweep_id: int) -> None:
        self._json("DELETE", f"/sweeps/{sweep_id}")

    def wait_sweep(self, sweep_id: int, timeout: float | None = None, poll: float = 2.0) -> SweepDetail:
        """Block until every run of the sweep has finished; returns the sweep with its summary."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (sweep := self.sweep(sweep_id)).status != "finished":
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"sweep {sweep_id} still {sweep.status} after {timeout} s: {sweep.counts}")
            time.sleep(poll)
        return sweep

    def sweep_rows(self, sweep_id: int) -> list[dict]:
        """One row per (run, level) of the final test figures: run, group, its grid values, seed,
        status, level, heldout, accuracy, reward_mean. A run without figures yet is one row with level None."""
        return tidy_rows(self.sweep(sweep_id))

    def sweep_frame(self, sweep_id: int):
        """``sweep_rows`` as a tidy pandas DataFrame (one row per run x level); needs pandas."""
        import pandas as pd

        return pd.DataFrame(self.sweep_rows(sweep_id))


def _parse(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data
