"""Run untrusted Python (model completions) against unit tests in a separate process.

Each run is one short-lived child process:

- ``python -I -S -B`` (isolated: no site-packages, no PYTHON* variables, no user site),
  started with ``start_new_session=True`` so it leads its own process group, in an empty
  temporary working directory, with a minimal environment (no secrets: PATH, LANG, HOME
  and TMPDIR pointing at that directory).
- Wall-clock timeout in the parent; on timeout, or whenever the run ends, the whole
  process group gets SIGKILL. The parent waits with ``waitid(WNOWAIT)`` so the group
  leader stays a zombie until the group is killed (its id cannot be reused meanwhile).
- Resource limits, set by the child harness on itself before any user code runs (not in
  ``preexec_fn``, which is unsafe when the parent has threads, and the reward runs
  completions from a thread pool): RLIMIT_AS (memory), RLIMIT_CPU, RLIMIT_NPROC = 0 (no
  new processes or threads for a non-root user), RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_CORE
  = 0; soft = hard, so they cannot be raised again.
- Network: when ``unshare -n`` (or, unprivileged, ``unshare -r -n``) works, the child runs
  in a new network namespace with no interfaces up, not even loopback. Always, in
  addition, an audit hook (PEP 578; hooks cannot be removed) in the child refuses sockets,
  process creation (fork, exec, spawn, system, subprocess), signals to other processes,
  raising resource limits, ctypes, writing or creating files outside the working
  directory, reading outside it and the standard library (``/proc`` holds other processes'
  environments and command lines, the home directory credential files), and any other
  file-system change (rename, remove, mkdir, chmod ...). Root ignores RLIMIT_NPROC, so for
  root the hook is what stops a fork bomb.
- Output goes to files, not pipes (RLIMIT_FSIZE caps them), so a completion that prints
  forever cannot fill the parent's memory.

The child reports, per test, the JSON of the function's return value; the parent
compares it with the expected JSON, so a completion cannot claim a pass it did not earn
(user code never sees the expected outputs, and ``__eq__`` tricks do not apply).

This is a guard against runaway or careless code from a model being trained, not a
security boundary against a determined attacker; for hostile code use a container or VM.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


NETWORK_NAMESPACES = ("auto", "off", "require")
MIN_MEMORY_MB = 64  # the interpreter needs it


@dataclass(frozen=True)
class SandboxLimits:
    """Limits for one run. ``network_namespace``: "auto" (use ``unshare`` when it works),
    "off" (audit hook only), "require" (fail when ``unshare`` is unavailable)."""

    timeout_s: float = 4.0
    memory_mb: int = 512
    cpu_s: int | None = None  # default: ceil(timeout_s) + 1
    file_size_mb: int = 1
    open_files: int = 64
    # RLIMIT_NPROC; 0 = no new process or thread (for a non-root user). None keeps the
    # inherited limit (tests use it to let a child fork and check the group is killed).
    max_processes: int | None = 0
    max_code_chars: int = 50_000
    network_namespace: str = "auto"
    audit_hook: bool = True

    def __post_init__(self):
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s!r}")
        if self.memory_mb < MIN_MEMORY_MB:
            raise ValueError(f"memory_mb must be >= {MIN_MEMORY_MB} (the interpreter needs it), got {self.memory_mb!r}")
        if self.network_namespace not in NETWORK_NAMESPACES:
            raise ValueError(
                f"network_namespace must be one of {list(NETWORK_NAMESPACES)}, got {self.network_namespace!r}"
            )


@dataclass
class SandboxResult:
    passed: int
    total: int
    timed_out: bool = False
    error: str | None = None  # why nothing ran (load error, crash, refused)
    outputs: list[str | None] = field(default_factory=list)  # JSON of each return value

    @property
    def fraction(self) -> float:
        return self.passed / self.total if self.total else 0.0


# The child harness. It must not print anything but its result lines.
_HARNESS = r"""
import sys, os, json, resource

def _main():
    cfg = json.loads(sys.stdin.read())
    for name, value in cfg["limits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    marker = cfg["marker"]
    root = os.path.realpath(os.getcwd())
    realpath, fsdecode, sep = os.path.realpath, os.fsdecode, os.sep
    # Reading is allowed in the working directory and the standard library (imports) only:
    # not /proc (another process's environment or command line holds the worker's tokens),
    # not the home directory (credential files), not the server's database.
    read_roots = tuple(sorted({root + sep} | {
        realpath(p) + sep for p in sys.path if p and os.path.isdir(p)}))
    read_files = frozenset(("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"))
    banned_events = frozenset((
        "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "os.startfile",
        "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill",
        "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto",
        "socket.sendmsg", "socket.gethostbyname", "socket.gethostbyaddr",
        "resource.setrlimit", "resource.prlimit", "sys.addaudithook", "sys.setprofile", "sys.settrace",
        "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function",
        "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link", "os.chmod",
        "os.chown", "os.truncate", "os.utime", "os.chflags", "os.lchflags", "os.mkfifo", "os.mknod",
        "os.setxattr", "os.removexattr", "shutil.chown", "shutil.rmtree", "os.putenv", "os.unsetenv",
    ))
    banned_modules = frozenset((
        "ctypes", "_ctypes", "_posixsubprocess", "subprocess", "multiprocessing", "_multiprocessing",
        "socket", "_socket", "ssl", "_ssl", "pty", "signal", "resource", "mmap", "fcntl",
        "_xxsubinterpreters",
    ))
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            if isinstance(path, int):
                return  # a descriptor already open
            writing = bool(flags & write_flags) if mode is None else any(c in mode for c in "wax+")
            # Only str and bytes are checked: a path object could name one file here and
            # another when opened. os.open (mode None) may carry a dir_fd the event does not
            # show, so there only an absolute path (which ignores dir_fd) is checked.
            if not isinstance(path, (str, bytes)) or (mode is None and not os.path.isabs(path)):
                real = None
            else:
                real = realpath(fsdecode(path))
            if writing:
                if real is None or not (real + sep).startswith(root + sep):
                    raise PermissionError("sandbox: writing outside the working directory is not allowed")
            elif real is None or not (real in read_files or (real + sep).startswith(read_roots)):
                raise PermissionError("sandbox: reading outside the working directory is not allowed")
        elif event in ("os.listdir", "os.scandir") and isinstance(args[0], (str, bytes)):
            real = realpath(fsdecode(args[0] or "."))
            if not (real + sep).startswith(read_roots):
                raise PermissionError("sandbox: listing outside the working directory is not allowed")
        elif event == "import":
            if args[0].split(".")[0] in banned_modules:
                raise ImportError("sandbox: module %r is not allowed" % args[0])
        elif event in banned_events:
            raise PermissionError("sandbox: %s is not allowed" % event)

    if cfg["audit_hook"]:
        import posix
        def _refuse(*args, **kwargs):
            raise PermissionError("sandbox: not allowed")
        # Calls without an audit event (pidfd tricks, setsid escaping the process group).
        for name in ("pidfd_open", "setsid", "setpgid", "fork", "forkpty", "system", "kill", "killpg"):
            for module in (os, posix):
                if hasattr(module, name):
                    setattr(module, name, _refuse)
        sys.addaudithook(hook)

    out = sys.stdout
    def report(line):
        out.write(marker + " " + line + "\n")
        out.flush()

    namespace = {"__name__": "__solution__", "__builtins__": __builtins__}
    try:
        exec(compile(cfg["code"], "<solution>", "exec"), namespace)
        func = namespace[cfg["func_name"]]
    except BaseException as exc:
        report("load " + json.dumps(type(exc).__name__ + ": " + str(exc)[:200]))
        return
    dumps, loads = json.dumps, json.loads
    for i, args in enumerate(cfg["tests"]):
        try:
            result = dumps(func(*loads(args)))
        except BaseException as exc:
            report("%d err %s" % (i, dumps(type(exc).__name__)))
        else:
            report("%d ok %s" % (i, result))

_main()
"""


@functools.cache
def _netns_prefix() -> tuple[str, ...] | None:
    """The command prefix that runs a program in a fresh network namespace, or None."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    for prefix in ((unshare, "-n", "--"), (unshare, "-r", "-n", "--")):
        try:
            done = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            return prefix
    logger.info("unshare -n is not available; the sandbox blocks network access with its audit hook only")
    return None


def network_namespace_available() -> bool:
    return _netns_prefix() is not None


def _limits_for(limits: SandboxLimits) -> dict[str, int]:
    import resource

    mb = 1024 * 1024
    cpu = limits.cpu_s if limits.cpu_s is not None else math.ceil(limits.timeout_s) + 1
    wanted: dict[str, int | None] = {
        "RLIMIT_AS": limits.memory_mb * mb,
        "RLIMIT_CPU": cpu,
        "RLIMIT_NPROC": limits.max_processes,
        "RLIMIT_FSIZE": limits.file_size_mb * mb,
        "RLIMIT_NOFILE": limits.open_files,
        "RLIMIT_CORE": 0,
    }
    out = {}
    for name, value in wanted.items():
        if value is None:
            continue
        _, hard = resource.getrlimit(getattr(resource, name))
        # A non-root child cannot go above the hard limit it inherits.
        out[name] = value if hard == resource.RLIM_INFINITY else min(value, hard)
    return out


def _wait_exited(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` for ``pid`` to exit without reaping it (so its process group
    id stays reserved until we kill the group). True if it exited."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        except ChildProcessError:
            return True
        if info is not None:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.02)


def run_tests(
    code: str, func_name: str, tests: Sequence[Sequence[Any]], limits: SandboxLimits | None = None
) -> SandboxResult:
    """Run ``func_name(*args)`` from ``code`` on each entry of ``tests`` (each a list of
    positional arguments) in a sandboxed child; ``outputs[i]`` is the JSON text of the
    return value, or None when test i raised, timed out or never ran. Never raises for
    anything the code does."""
    limits = limits or SandboxLimits()
    total = len(tests)
    if len(code) > limits.max_code_chars:
        return SandboxResult(0, total, error="code too long", outputs=[None] * total)
    prefix: tuple[str, ...] = ()
    if limits.network_namespace != "off":
        found = _netns_prefix()
        if found is None and limits.network_namespace == "require":
            raise RuntimeError("network_namespace='require' but 'unshare -n' does not work here")
        prefix = found or ()
    marker = secrets.token_hex(8)
    payload = {
        "limits": _limits_for(limits),
        "marker": marker,
        "audit_hook": limits.audit_hook,
        "code": code,
        "func_name": func_name,
        "tests": [json.dumps(list(args)) for args in tests],
    }
    with tempfile.TemporaryDirectory(prefix="e2h-sandbox-", ignore_cleanup_errors=True) as base:
        work = os.path.join(base, "work")
        os.mkdir(work, 0o700)
        paths = {name: os.path.join(base, name) for name in ("stdin", "stdout", "stderr")}
        with open(paths["stdin"], "w", encoding="utf-8") as f:
            json.dump(payload, f)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": work, "TMPDIR": work}
        command = [*prefix, sys.executable, "-I", "-S", "-B", "-c", _HARNESS]
        timed_out = False
        with (
            open(paths["stdin"], "rb") as stdin,
            open(paths["stdout"], "wb") as stdout,
            open(paths["stderr"], "wb") as stderr,
        ):
            try:
                proc = subprocess.Popen(
                    command, stdin=stdin, stdout=stdout, stderr=stderr, cwd=work, env=env,
                    start_new_session=True, close_fds=True,
                )  # fmt: skip
            except OSError as exc:
                logger.warning("sandbox: could not start the child: %s", exc)
                return SandboxResult(0, total, error=f"spawn failed: {exc}", outputs=[None] * total)
            try:
                timed_out = not _wait_exited(proc.pid, limits.timeout_s)
            finally:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        with open(paths["stdout"], "rb") as f:
            text = f.read(4 * limits.file_size_mb * 1024 * 1024).decode("utf-8", "replace")
        with open(paths["stderr"], "rb") as f:
            err_tail = f.read(100_000).decode("utf-8", "replace")[-500:]
    outputs: list[str | None] = [None] * total
    error = None
    for line in text.splitlines():
        if not line.startswith(marker + " "):
            continue
        rest = line[len(marker) + 1 :]
        if rest.startswith("load "):
            error = "load error: " + rest[5:]
            continue
        index, _, status_value = rest.partition(" ")
        status, _, value = status_value.partition(" ")
        if index.isdigit() and int(index) < total and status == "ok":
            outputs[int(index)] = value
    if error is None and timed_out:
        error = "timeout"
    elif error is None and proc.returncode != 0:
        error = f"exit code {proc.returncode}: {err_tail.strip()[-200:]}"
    return SandboxResult(0, total, timed_out=timed_out, error=error, outputs=outputs)


def score_tests(
    code: str, func_name: str, tests: Sequence[Mapping[str, Any]], limits: SandboxLimits | None = None
) -> SandboxResult:
    """Run unit tests ``{"args": [...], "output": ...}`` and count the passes: a test
    passes when the return value's JSON equals the expected output's JSON (so 1 != True
    and 2 != 2.0)."""
    result = run_tests(code, func_name, [t["args"] for t in tests], limits)
    expected = [json.dumps(t["output"]) for t in tests]
    result.passed = sum(1 for got, want in zip(result.outputs, expected, strict=True) if got == want)
    return result


def score_many(
    jobs: Sequence[tuple[str, str, Sequence[Mapping[str, Any]]]],
    limits: SandboxLimits | None = None,
    max_workers: int | None = None,
) -> list[SandboxResult]:
    """``score_tests`` for many (code, func_name, tests) jobs, several children at a time."""
    if not jobs:
        return []
    workers = max_workers or min(8, os.cpu_count() or 1)
    if workers == 1 or len(jobs) == 1:
        return [score_tests(*job, limits=limits) for job in jobs]
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs)), thread_name_prefix="e2h-sandbox") as pool:
        return list(pool.map(lambda job: score_tests(*job, limits=limits), jobs))
