"""The worker: claim a run, train it in a child process, report back, repeat.

Training runs in a child (``python -m e2h.train``, or ``accelerate launch`` for several
processes) in its own process group, so a crash, an out-of-memory kill or a cancel never
takes the worker down. What starts, on which of the worker's GPUs (``--gpus``, default every
visible one), with which environment, is the run's launch plan (``e2h.plan``), the same one
``e2h train`` follows; a run in ``vllm_mode=server`` gets its managed vLLM server first,
waited for with a deadline while the worker keeps heartbeating, and stopped with the run.
While training runs, the worker heartbeats (renewing its lease and learning of cancels) and
ships the child's spool files (see ``worker.shipper``).

What a run may do here is the operator's call, not the submitter's: before training, the
claimed run is re-checked against the worker's settings (``worker.settings``, ``E2H_*``:
data and model roots, sandbox and resource ceilings, remote code, hub credentials) and a run
they refuse fails at once, naming the field and the rule. The child gets a scrubbed
environment (no tokens), its output dir is always ``<work-dir>/run-<id>`` whatever the server
says, and every text the worker posts passes through one redaction step.

Signals: the first SIGTERM/SIGINT/SIGHUP asks the child to checkpoint and stop, hands the run
back to the queue and exits; a second one kills the child at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from e2h.client import APIError, Client, Conflict, ServerUnavailable
from e2h.config import RunConfig
from e2h.outputs import CONFIG_FILE, LOG_FILE, STOP_FILE, TEST_RESULTS_FILE, VLLM_LOG_FILE
from e2h.plan import LaunchPlan, build_plan, gpus_needed, visible_gpus
from e2h.processes import STOP_SIGNALS, die_with_parent
from e2h.schemas import ProcessReport, RunPublic, RunReport, RunStatus, WorkerOutcome
from e2h.vllm_server import ManagedVLLMServer, VLLMServerError
from worker.policy import check_run
from worker.settings import Redactor, WorkerSettings, child_environment, secret_values
from worker.shipper import Shipper

logger = logging.getLogger("e2h.worker")

ERROR_TAIL_LINES = 25


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def killed_by(signum: int) -> str:
    """The first line of a run's error when a signal ended its training process."""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    text = f"training process was killed by {name} (signal {signum})"
    if signum == signal.SIGKILL:
        # Nobody in the worker sends SIGKILL to a child it still reports on: the usual sender
        # is the kernel's out-of-memory killer (or an operator).
        text += "; out of memory? The kernel's OOM killer sends SIGKILL (see dmesg)"
    return text


def error_tail(log_path: Path, lines: int = ERROR_TAIL_LINES) -> str:
    """The last meaningful lines of the child's output (progress-bar redraws dropped)."""
    if not log_path.is_file():
        return ""
    with open(log_path, "rb") as f:
        f.seek(max(0, log_path.stat().st_size - 200_000))
        text = f.read().decode("utf-8", "replace")
    kept = [line.rsplit("\r", 1)[-1].rstrip() for line in text.splitlines()]
    kept = [line for line in kept if line and "it/s]" not in line and "s/it]" not in line]
    return "\n".join(kept[-lines:])


class RedactingClient(Client):
    """The worker's client: every JSON body it posts (errors, log lines, snapshots, evals) passes
    through the redactor first, so no code path can post one of the worker's secrets."""

    def __init__(self, base_url: str, token: str | None, redactor: Redactor):
        super().__init__(base_url, token=token)
        self.redactor = redactor

    def request(self, method: str, path: str, **kwargs):
        if "json" in kwargs:
            kwargs["json"] = self.redactor.json(kwargs["json"])
        return super().request(method, path, **kwargs)


@dataclass
class Job:
    """One claimed attempt of a run on this worker: where it writes and what the worker reports about it."""

    run_id: int
    attempt: int
    output_dir: Path
    shipper: Shipper
    processes: list[ProcessReport] | None = None  # the launch plan, once it is built

    def report(self) -> RunReport:
        return RunReport(step=self.shipper.last_step, output_dir=str(self.output_dir), processes=self.processes)


@dataclass
class Worker:
    server: str
    token: str | None = None
    worker_id: str = field(default_factory=default_worker_id)
    labels: list[str] = field(default_factory=list)
    work_dir: Path = Path("outputs")
    heartbeat_s: float = 5.0
    ship_every_s: float = 0.5
    poll_max_s: float = 10.0
    burst: bool = False
    max_jobs: int | None = None
    settings: WorkerSettings = field(default_factory=WorkerSettings)
    gpus: list[int] | None = None  # the GPUs runs may use; None: every visible one

    def __post_init__(self) -> None:
        self.gpus = visible_gpus() if self.gpus is None else list(self.gpus)
        secrets = secret_values(self.settings, os.environ) | ({self.token} if self.token else set())
        self.redactor = Redactor(secrets)
        self.client = RedactingClient(self.server, self.token, self.redactor)
        self.signals = 0
        self.child: subprocess.Popen | None = None

    # -- signals ------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.signals += 1
        logger.warning("signal %s (%d): %s", signal.Signals(signum).name, self.signals,
                       "stopping gracefully" if self.signals == 1 else "killing training now")
        if self.signals >= 2:
            self._kill_child()

    def _kill_child(self) -> None:
        if self.child is not None and self.child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.child.pid, signal.SIGKILL)

    # -- main loop ------------------------------------------------------------------------

    def run(self) -> int:
        """Claim and train runs until stopped (or, with ``burst``, until the queue is empty)."""
        done, idle = 0, 0.5
        logger.info("worker %s serving %s", self.worker_id, self.server)
        while not self.signals and (self.max_jobs is None or done < self.max_jobs):
            try:
                # One run at a time: all of this worker's GPUs are free when it asks.
                claim = self.client.claim(self.worker_id, self.labels, gpus_free=len(self.gpus))
            except ServerUnavailable as e:
                # An unreachable server says nothing about the queue: even a burst worker waits
                # for it to come back instead of leaving queued runs behind.
                logger.warning("claim failed, server unavailable (retrying in %.1f s): %s", idle, e)
                time.sleep(idle)
                idle = min(self.poll_max_s, idle * 2)
                continue
            except APIError as e:
                logger.warning("claim failed: %s", e)
                if self.burst:
                    raise
                claim = None
            if claim is None:
                if self.burst:
                    break
                time.sleep(idle)
                idle = min(self.poll_max_s, idle * 2)
                continue
            idle = 0.5
            self.process(claim.run)
            done += 1
        self.client.close()
        return done

    def process(self, run: RunPublic) -> str:
        """Train one claimed run to its end; returns the status it finished with (queued: handed back),
        or ``lost`` when another attempt owns it now."""
        run_id, attempt = run.id, run.attempt
        refused = check_run(run.config, self.settings)
        if refused:
            # What a run may touch here is this machine's owner's call: fail it before anything runs.
            logger.error("run %d refused: %s", run_id, self.redactor.text(refused))
            self._retry(lambda: self.client.finish(run_id, self.worker_id, attempt, RunStatus.failed, refused))
            return RunStatus.failed
        output_dir = self._output_dir(run)
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / STOP_FILE).unlink(missing_ok=True)
        config_path = output_dir / CONFIG_FILE
        config_path.write_text(json.dumps(run.config))
        job = Job(run_id, attempt, output_dir, Shipper(self.client, run_id, self.worker_id, attempt, output_dir))
        logger.info("run %d attempt %d -> %s", run_id, attempt, output_dir)
        try:
            config = RunConfig.model_validate(run.config)
            plan = self.plan(config, output_dir, config_path, run)
            job.processes = [ProcessReport(role=p.role, command=p.command, env=p.env) for p in plan.processes]
        except ValueError as e:
            why = str(e)
            logger.error("run %d cannot be placed here: %s", run_id, why)
            self._retry(lambda: self.client.finish(run_id, self.worker_id, attempt, RunStatus.failed, why))
            return RunStatus.failed
        # The operator's WANDB_* settings reach only a run the plan let report to wandb.
        env = child_environment(self.settings, os.environ, output_dir, wandb="wandb" in config.algorithm.report_to)
        server = None
        if (vllm := plan.process("vllm")) is not None:
            server = ManagedVLLMServer(vllm, output_dir / VLLM_LOG_FILE, env).start()
        try:
            outcome, returncode = self._start_and_supervise(job, plan, server, env)
        finally:
            if server is not None:
                server.stop()
        if outcome == WorkerOutcome.failed:
            return RunStatus.failed
        if outcome == WorkerOutcome.lost:
            logger.warning("run %d: lease lost, training killed; another attempt owns it now", run_id)
            return WorkerOutcome.lost
        try:
            return self._report_end(job, outcome, returncode)
        except Conflict:
            logger.warning("run %d: lease lost while reporting the end; another attempt owns it now", run_id)
            return WorkerOutcome.lost

    def plan(self, config: RunConfig, output_dir: Path, config_path: Path, run: RunPublic | None = None) -> LaunchPlan:
        """The run's launch plan on this worker's GPUs, with what its operator provides and allows
        (ValueError when it does not fit them, or uses what the operator does not provide)."""
        gpus = self.gpus[: gpus_needed(config)] if self.gpus else []
        return build_plan(config, output_dir, config_path, gpus, launch=self.settings,
                          run_name=run.name if run else None, tags=run.tags if run else ())

    def _beat(self, job: Job) -> bool:
        """Heartbeat with the job's report: whether a cancel was requested (Conflict: the lease is lost)."""
        return self.client.heartbeat(job.run_id, self.worker_id, job.attempt, job.report()).cancel_requested

    def _finish(self, job: Job, status: RunStatus, error: str | None) -> None:
        self._retry(lambda: self.client.finish(job.run_id, self.worker_id, job.attempt, status, error,
                                               str(job.output_dir)))

    def _start_and_supervise(self, job: Job, plan: LaunchPlan, server: ManagedVLLMServer | None,
                             env: dict[str, str]) -> tuple[WorkerOutcome, int]:
        """Wait for the vLLM server (if any), start training, supervise it: (outcome, returncode)."""
        if server is not None:
            outcome = self._wait_for_vllm(job, server)
            if outcome is not None:
                return outcome, 0
        train = plan.process("train")
        # torchrun (several processes) stops its workers on SIGTERM; a plain child is simply killed.
        death_signal = signal.SIGTERM if "accelerate.commands.launch" in train.command else signal.SIGKILL
        with open(job.output_dir / LOG_FILE, "ab") as log:
            self.child = subprocess.Popen(
                train.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**env, **train.env}, start_new_session=True, preexec_fn=die_with_parent(death_signal),
            )
        outcome = self._supervise(job)
        returncode = self.child.wait()
        self.child = None
        return outcome, returncode

    def _wait_for_vllm(self, job: Job, server: ManagedVLLMServer) -> WorkerOutcome | None:
        """None once the server is healthy; else the run's outcome (cancelled, released, lost, failed)."""
        state = {"outcome": None, "next_beat": 0.0}

        def keep_lease_and_check() -> bool:
            if self.signals:
                state["outcome"] = WorkerOutcome.released
                return True
            if time.monotonic() >= state["next_beat"]:
                try:
                    cancel = self._beat(job)
                except Conflict:
                    state["outcome"] = WorkerOutcome.lost
                    return True
                except (ServerUnavailable, APIError) as e:
                    logger.warning("heartbeat failed (the vLLM server is still starting): %s", e)
                    return False
                state["next_beat"] = time.monotonic() + self.heartbeat_s
                if cancel:
                    state["outcome"] = WorkerOutcome.cancelled
                    return True
            return False

        try:
            server.wait_healthy(self.settings.vllm_health_deadline_s, should_abort=keep_lease_and_check)
            return None
        except VLLMServerError as e:
            if state["outcome"] is not None:
                return state["outcome"]
            logger.error("run %d: %s", job.run_id, e)
            self._finish(job, RunStatus.failed, f"{e}\n{error_tail(server.log_path)}".strip())
            return WorkerOutcome.failed

    def _report_end(self, job: Job, outcome: WorkerOutcome, returncode: int) -> str:
        """Ship what is left of the spool, then finish (or release) the run."""

        def beat_and_ship() -> None:
            # Keep the lease while the server is coming back: a flush can outlast it.
            self._beat(job)
            job.shipper.ship()

        self._retry(beat_and_ship)
        log_path = job.output_dir / LOG_FILE
        if outcome == WorkerOutcome.cancelled:
            status, error = RunStatus.cancelled, None
        elif outcome == WorkerOutcome.released:
            return self._release(job)
        elif returncode == 0 and (job.output_dir / TEST_RESULTS_FILE).is_file():
            status, error = RunStatus.succeeded, None
        elif returncode < 0:
            status, error = RunStatus.failed, f"{killed_by(-returncode)}\n{error_tail(log_path)}"
        else:
            status, error = RunStatus.failed, f"training exited with code {returncode}:\n{error_tail(log_path)}"
        self._finish(job, status, error)
        logger.info("run %d finished: %s", job.run_id, status)
        return status

    def _output_dir(self, run: RunPublic) -> Path:
        # Derived from the run id only, never from the run's reported output_dir: that is whatever
        # some worker (or anyone holding the worker token) told the server. A requeued run still
        # resumes from the previous attempt's checkpoints when that attempt used the same work dir
        # (this machine, or a directory shared by the workers).
        return Path(self.work_dir).resolve() / f"run-{int(run.id)}"

    def _supervise(self, job: Job) -> WorkerOutcome:
        """Heartbeat and ship while the child runs: done, cancelled, released or lost."""
        outcome = WorkerOutcome.done
        next_beat = 0.0
        stop_asked = False
        while self.child.poll() is None:
            if self.signals and not stop_asked:
                (job.output_dir / STOP_FILE).touch()
                stop_asked, outcome = True, WorkerOutcome.released
            now = time.monotonic()
            if now >= next_beat:
                try:
                    cancel = self._beat(job)
                    next_beat = now + self.heartbeat_s
                    if cancel and not stop_asked:
                        (job.output_dir / STOP_FILE).touch()
                        stop_asked, outcome = True, WorkerOutcome.cancelled
                except Conflict:
                    self._kill_child()
                    return WorkerOutcome.lost
                except (ServerUnavailable, APIError) as e:
                    logger.warning("heartbeat failed (training goes on): %s", e)
                    next_beat = now + min(self.heartbeat_s, 2.0)
            try:
                job.shipper.ship()
            except Conflict:
                self._kill_child()
                return WorkerOutcome.lost
            except (ServerUnavailable, APIError) as e:
                logger.debug("shipping postponed: %s", e)
            time.sleep(self.ship_every_s)
        return outcome

    def _release(self, job: Job) -> str:
        self._retry(lambda: self.client.release(job.run_id, self.worker_id, job.attempt, str(job.output_dir)))
        logger.info("run %d handed back to the queue", job.run_id)
        return RunStatus.queued

    def _retry(self, call):
        """Call until the server answers; back off exponentially (up to two heartbeat periods, so a
        returning server hears from this worker before its lease runs out) while it is unreachable."""
        max_wait = max(1.0, 2 * self.heartbeat_s)
        delay = 0.5
        while True:
            try:
                return call()
            except ServerUnavailable as e:
                if self.signals >= 2:
                    raise
                logger.warning("server unavailable, retrying in %.1f s: %s", delay, e)
                time.sleep(delay)
                delay = min(max_wait, delay * 2)


def serve(server_url: str | None = None, token: str | None = None, *, labels: list[str] | None = None,
          work_dir: Path = Path("outputs"), heartbeat_s: float = 5.0, burst: bool = False, max_jobs: int | None = None,
          gpus: list[int] | None = None) -> int:
    """``e2h worker``: serve ``server_url`` (default: E2H_SERVER_URL) until stopped. Policy and secrets come
    from the E2H_* settings (``worker.settings``); the command's options override the connection's."""
    settings = WorkerSettings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the worker's own
    worker = Worker(server_url or settings.server_url, token or settings.worker_token, labels=list(labels or []),
                    work_dir=Path(work_dir), heartbeat_s=heartbeat_s, burst=burst, max_jobs=max_jobs,
                    settings=settings, gpus=gpus)
    worker.install_signal_handlers()
    worker.run()
    return 0
