"""The coding sandbox against hostile completions, through the Coding task's reward function
exactly as a training run calls it (TRL's ``reward_func(completions, **columns)``).

Each hostile completion is written so that it earns the full reward only if its attack
worked: the attack runs first, then ``solve`` is the reference solution when the attack
succeeded (or simply ran to the end) and a wrong one otherwise. A reward of 0 therefore
means the sandbox contained it. Besides the rewards, the host is checked directly: the
file outside the working directory does not exist, the listener saw no connection, no
process is left behind, the test process's memory did not grow, a thread in it kept
ticking while the completions ran, and the whole batch ended within its time bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from e2h.tasks import get_task
from e2h.tasks.sandbox import SandboxLimits, run_tests
from tests.server.helpers import REPO

TIMEOUT = 2.0
SLACK = 3.0  # process start and teardown on a busy CI machine
SECRETS = {
    "E2H_WORKER_TOKEN": "worker-secret-7f3a",
    "E2H_API_TOKEN": "api-secret-91bc",
    "HF_TOKEN": "hf_secret_5d2e",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-c04d",
}

# Defines FOUND: whether any secret is visible from inside, by any route we know of.
FIND_SECRETS = r'''
import os
NAMES = %(names)r
def _found():
    if any(os.environ.get(n) for n in NAMES):
        return True
    paths = []
    try:
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                paths += ["/proc/%%s/environ" %% pid, "/proc/%%s/cmdline" %% pid]
    except Exception:
        pass
    paths += ["/proc/%%d/environ" %% os.getppid(), "/proc/1/environ", %(extra)r]
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except Exception:
            continue
        if any(n.encode() in data for n in NAMES):
            return True
    return False
FOUND = _found()
'''


def find_secrets(extra_file: str = "/nonexistent") -> str:
    return FIND_SECRETS % {"names": sorted(SECRETS), "extra": extra_file}


def gold_if(condition: str, solution: str) -> str:
    """``solve`` is the reference solution when ``condition`` holds at load time, else wrong."""
    wrong = "def solve(xs):\n    return None\n"
    indented = "\n".join("    " + line for line in (solution + "\n").splitlines())
    return f"if {condition}:\n{indented}\nelse:\n" + "\n".join("    " + line for line in wrong.splitlines()) + "\n"


def completion(code: str) -> str:
    return f"I will write it.</think>\n<answer>```python\n{code}```</answer>"


def hostile_completions(row: dict, tmp_path: Path, port: int) -> dict[str, str]:
    gold = row["solution"]
    target = tmp_path / "escaped.txt"
    return {
        "network: connect to a loopback listener": (
            f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1).close()\n"
            "    OK = True\nexcept BaseException:\n    OK = False\n") + gold_if("OK", gold),
        "network: the C socket module": (
            "try:\n    import _socket\n    s = _socket.socket()\n    s.settimeout(1)\n"
            f"    s.connect(('127.0.0.1', {port}))\n    OK = True\nexcept BaseException:\n    OK = False\n"
        ) + gold_if("OK", gold),
        "write outside the working directory": (
            f"try:\n    open({str(target)!r}, 'w').write('pwned')\n    OK = True\nexcept BaseException:\n"
            "    OK = False\n") + gold_if("OK", gold),
        "fork bomb": "import os\ndef bomb(depth):\n    if depth:\n        os.fork()\n        bomb(depth - 1)\n"
                     "bomb(8)\n" + gold,
        "memory bomb (10 GB)": "blob = bytearray(10 * 1024**3)\n" + gold,
        "memory bomb (growing list)": "blob = []\nwhile True:\n    blob.append(' ' * 10**6)\n" + gold,
        "infinite loop": "while True:\n    pass\n" + gold,
        "secrets: environment, /proc of every process": find_secrets() + gold_if("FOUND", gold),
        "secrets: a credentials file outside": find_secrets(str(tmp_path / "credentials")) + gold_if("FOUND", gold),
    }


def _children_of(pid: int) -> set[int]:
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


class Ticker(threading.Thread):
    """Ticks every 10 ms; ``max_gap`` is the longest the test process stopped answering."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.max_gap = 0.0

    def run(self) -> None:
        last = time.monotonic()
        while not self.stop.wait(0.01):
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last)
            last = now


@pytest.mark.slow
def test_hostile_completions_score_zero_and_the_host_is_unharmed(tmp_path: Path, listener, monkeypatch) -> None:
    for name, value in SECRETS.items():  # as a worker's environment would hold them
        monkeypatch.setenv(name, value)
    (tmp_path / "credentials").write_text("[default]\n" + "\n".join(f"{k}={v}" for k, v in SECRETS.items()))
    task = get_task("coding", timeout_s=TIMEOUT, format_reward=0.0)
    reward_func = task.as_reward_func()
    row = task.generate(2, 1, seed=0)[0]
    hostile = hostile_completions(row, tmp_path, listener.port)
    names = list(hostile)
    # One GRPO-like batch: the hostile completions plus two correct ones as controls.
    completions = [completion(code) for code in hostile.values()] + [completion(row["solution"])] * 2
    columns = {key: [row[key]] * len(completions) for key in row}

    me = psutil.Process()
    children_before = _children_of(me.pid)
    rss_before = me.memory_info().rss
    ticker = Ticker()
    ticker.start()
    start = time.monotonic()
    rewards = reward_func(completions=completions, prompts=[row["question"]] * len(completions), **columns)
    elapsed = time.monotonic() - start
    ticker.stop.set()
    ticker.join()

    by_name = dict(zip(names, rewards, strict=False))
    assert rewards[-2:] == [task.max_reward] * 2, rewards  # the controls: the sandbox works at all
    assert {n: r for n, r in by_name.items() if r != 0.0} == {}, by_name
    assert not (tmp_path / "escaped.txt").exists()
    assert not listener.accepted()
    deadline = time.monotonic() + 5  # killed process groups may take a moment to be reaped
    while _children_of(me.pid) - children_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _children_of(me.pid) - children_before == set()
    rss_growth_mb = (me.memory_info().rss - rss_before) / 2**20
    assert rss_growth_mb < 50, rss_growth_mb
    workers = min(8, os.cpu_count() or 1)
    hangs = 3  # the infinite loop and, at worst, the two memory bombs run into the timeout
    bound = -(-hangs // workers) * TIMEOUT + len(completions) / workers * 0.5 + SLACK
    assert elapsed < bound, (elapsed, bound)
    assert ticker.max_gap < 0.5, ticker.max_gap
    print(f"sandbox-report: {len(hostile)} hostile + 2 correct completions in one reward call, "
          f"{workers} sandboxes at a time: all hostile rewards 0.0, controls {task.max_reward}; "
          f"{elapsed:.1f}s (bound {bound:.1f}s); test process: longest stall {ticker.max_gap * 1000:.0f} ms, "
          f"RSS +{rss_growth_mb:.1f} MB, no process left")


# The host is a separate process started with the secrets in its environment, as a worker
# is: /proc/<its pid>/environ then holds them, which monkeypatch.setenv cannot show.
HOST = r"""
import json, sys
from e2h.tasks import get_task
task = get_task("coding", timeout_s=2.0, format_reward=0.0)
row = task.generate(2, 1, seed=0)[0]
completions = json.loads(sys.stdin.read())
rewards = task.as_reward_func()(completions=completions, **{k: [row[k]] * len(completions) for k in row})
print(json.dumps({"rewards": rewards, "max": task.max_reward}))
"""


@pytest.mark.slow
def test_secrets_in_the_parents_environment_stay_out_of_reach(tmp_path: Path) -> None:
    row = get_task("coding").generate(2, 1, seed=0)[0]
    probe = find_secrets() + gold_if("FOUND", row["solution"])
    completions = [completion(probe), completion(row["solution"])]
    env = {**os.environ, **SECRETS, "OMP_NUM_THREADS": "1"}
    argv = [f"--{k}={v}" for k, v in SECRETS.items()]  # on its command line too, as `--token=...` would be
    done = subprocess.run([sys.executable, "-c", HOST, *argv],
                          input=json.dumps(completions), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rewards"] == [0.0, result["max"]], result


def test_control_without_the_audit_hook_the_secrets_are_in_reach(tmp_path: Path) -> None:
    # Proves the probe above can find them: with the hook off, reading the parent's
    # /proc/<pid>/environ works, and the probe reports what it read.
    code = (
        "import os\n"
        "def solve(xs):\n"
        "    with open('/proc/%d/environ' % os.getppid(), 'rb') as f:\n"
        "        return f.read().decode('latin-1')\n"
    )
    host = (
        "import json, sys\n"
        "from e2h.tasks.sandbox import SandboxLimits, run_tests\n"
        "r = run_tests(sys.stdin.read(), 'solve', [[[1]]], SandboxLimits(timeout_s=5, audit_hook=%s))\n"
        "print(json.dumps(r.outputs[0]))\n"
    )
    env = {**os.environ, **SECRETS}
    seen = {}
    for hook in (False, True):
        done = subprocess.run([sys.executable, "-c", host % hook], input=code, cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        seen[hook] = json.loads(done.stdout.strip().splitlines()[-1]) or ""
    assert all(f"{k}={v}" in json.loads(seen[False]) for k, v in SECRETS.items())
    assert seen[True] == ""  # refused: the test raised, so no output


def test_the_sandboxed_environment_is_scrubbed(monkeypatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    result = run_tests("import os\ndef solve(xs):\n    return dict(os.environ)\n", "solve", [[[1]]],
                       SandboxLimits(timeout_s=5))
    environ = json.loads(result.outputs[0])
    assert set(environ) == {"PATH", "LANG", "HOME", "TMPDIR"}, environ
    assert not any(v in json.dumps(environ) for v in SECRETS.values())


@pytest.mark.parametrize("path", ["/proc/self/environ", "/proc/1/cmdline", "/etc/passwd", "{tmp}/credentials",
                                  "../stdin", "{home}/.profile"])
def test_reading_outside_the_working_directory_and_stdlib_is_refused(path: str, tmp_path: Path) -> None:
    (tmp_path / "credentials").write_text("secret")
    path = path.format(tmp=tmp_path, home=Path.home())
    code = (
        "def solve(xs):\n"
        "    try:\n"
        f"        open({path!r}, 'rb').read(1)\n"
        "        return 'read'\n"
        "    except PermissionError as e:\n"
        "        return 'refused' if 'sandbox' in str(e) else 'denied by the OS'\n"
        "    except OSError as e:\n"
        "        return type(e).__name__\n"
    )
    result = run_tests(code, "solve", [[[1]]], SandboxLimits(timeout_s=5))
    assert result.outputs == ['"refused"'], result


def test_reading_in_the_working_directory_and_importing_the_stdlib_still_work() -> None:
    code = (
        "import collections, heapq, itertools, json, pathlib, random, re, zoneinfo\n"
        "open('notes.txt', 'w').write('kept')\n"
        "def solve(xs):\n"
        "    return [open('notes.txt').read(), sorted(collections.Counter(xs))]\n"
    )
    result = run_tests(code, "solve", [[[2, 1, 2]]], SandboxLimits(timeout_s=5))
    assert result.outputs == ['["kept", [1, 2]]'], result
