"""The coding sandbox: hostile or broken completions end with no credit, within the
timeout, and leave the test process healthy. Each hostile snippet sits next to a correct
``solve``, so a zero score proves the sandbox stopped it (the controls show the same
snippet succeeding once the guard in question is off)."""

from __future__ import annotations

import os
import time

import pytest

from e2h.tasks import get_task
from e2h.tasks.sandbox import SandboxLimits, network_namespace_available, score_many, score_tests
from tests.tasks.tasks_helpers import completion

GOOD = "def solve(xs):\n    return xs[::-1]\n"
TESTS = [
    {"args": [[1, 2, 3]], "output": [3, 2, 1]},
    {"args": [[]], "output": []},
    {"args": [[5]], "output": [5]},
]
TIMEOUT = 1.0
LIMITS = SandboxLimits(timeout_s=TIMEOUT)
SLACK = 3.0  # process start-up and teardown on a slow, busy CI machine


def _children() -> list[int]:
    me = str(os.getpid())
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:
                out.append(int(entry))
    return out


def run(code: str, limits: SandboxLimits = LIMITS):
    start = time.monotonic()
    result = score_tests(code, "solve", TESTS, limits)
    return result, time.monotonic() - start


def test_a_correct_solution_passes():
    result, elapsed = run(GOOD)
    assert (result.passed, result.total, result.error) == (3, 3, None)
    assert elapsed < TIMEOUT + SLACK


HOSTILE = {
    "infinite loop at import": "while True:\n    pass\n",
    # Recursive, but capped at 2**8 processes in case the sandbox ever fails.
    "fork bomb": "import os\ndef bomb(depth):\n    if depth:\n        os.fork()\n        bomb(depth - 1)\n"
    "bomb(8)\n",
    "fork through posix": "import posix\nposix.fork()\n",
    "10 GB allocation": "blob = bytearray(10 * 1024**3)\n",
    "subprocess": "import subprocess\nsubprocess.run(['true'])\n",
    "os.system": "import os\nos.system('true')\n",
    "signal the parent": "import os\nos.kill(os.getppid(), 0)\n",
    "ctypes": "import ctypes\n",
    "raise the memory limit": "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n",
    "print forever": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
    "sys.exit": "import sys\nsys.exit(0)\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_code_scores_zero_within_the_timeout(name):
    before = _children()
    result, elapsed = run(HOSTILE[name] + GOOD)
    assert result.passed == 0, result
    assert elapsed < TIMEOUT + SLACK
    assert _children() == before  # nothing left running under us
    assert run(GOOD)[0].passed == 3  # and the next run is unaffected


def test_an_infinite_loop_inside_the_function_times_out():
    result, elapsed = run("def solve(xs):\n    while True:\n        pass\n")
    assert result.timed_out and result.passed == 0
    assert TIMEOUT <= elapsed < TIMEOUT + SLACK


def test_results_before_a_hang_still_count():
    code = "def solve(xs):\n    while not xs:\n        pass\n    return xs[::-1]\n"
    result, _ = run(code)
    assert result.timed_out and result.passed == 1  # test 0 passed; test 1 hangs; test 2 never ran


def test_socket_connect_to_loopback_fails(listener):
    port = listener.port
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=0.5).close()\n" + GOOD
    result, _ = run(code)
    assert result.passed == 0
    assert not listener.accepted()


SOCKET_VIA_C = "import _socket\ns = _socket.socket()\ns.settimeout(0.5)\ns.connect(('127.0.0.1', {port}))\n"


def test_the_audit_hook_alone_blocks_the_network(listener):
    port = listener.port
    result, _ = run(
        SOCKET_VIA_C.format(port=port) + GOOD, SandboxLimits(timeout_s=TIMEOUT, network_namespace="off")
    )
    assert result.passed == 0 and "not allowed" in (result.error or "")
    assert not listener.accepted()


@pytest.mark.skipif(not network_namespace_available(), reason="unshare -n is not available here")
def test_the_network_namespace_alone_blocks_loopback(listener):
    port = listener.port
    code = SOCKET_VIA_C.format(port=port) + GOOD
    result, _ = run(code, SandboxLimits(timeout_s=TIMEOUT, network_namespace="require", audit_hook=False))
    assert result.passed == 0
    assert not listener.accepted()


def test_control_without_guards_the_connection_goes_through(listener):
    # Proves the two tests above can fail: with both guards off, the same code connects.
    port = listener.port
    code = SOCKET_VIA_C.format(port=port) + GOOD
    result, _ = run(code, SandboxLimits(timeout_s=TIMEOUT, network_namespace="off", audit_hook=False))
    assert result.passed == 3
    deadline = time.monotonic() + 5
    while not listener.accepted():
        assert time.monotonic() < deadline, "the unguarded connection never arrived"
        time.sleep(0.01)


def test_writing_outside_the_working_directory_fails(tmp_path):
    target = tmp_path / "escaped.txt"
    for code in (
        f"open({str(target)!r}, 'w').write('x')\n",
        f"import os\nos.close(os.open({str(target)!r}, os.O_CREAT | os.O_WRONLY))\n",
        # a directory fd the hook cannot see through
        f"import os\nfd = os.open({str(tmp_path)!r}, os.O_RDONLY)\n"
        "os.close(os.open('escaped.txt', os.O_CREAT | os.O_WRONLY, dir_fd=fd))\n",
        f"import pathlib\npathlib.Path({str(target)!r}).write_text('x')\n",
        f"import os\nos.mkdir({str(tmp_path / 'newdir')!r})\n",
        f"import os\nos.rename({str(tmp_path / 'keep.txt')!r}, {str(target)!r})\n",
    ):
        (tmp_path / "keep.txt").write_text("keep")
        result, _ = run(code + GOOD)
        assert result.passed == 0, code
        assert not target.exists() and not (tmp_path / "newdir").exists()
        assert (tmp_path / "keep.txt").read_text() == "keep"


def test_control_without_the_hook_the_write_goes_through(tmp_path):
    target = tmp_path / "escaped.txt"
    result, _ = run(
        f"open({str(target)!r}, 'w').write('x')\n" + GOOD, SandboxLimits(timeout_s=TIMEOUT, audit_hook=False)
    )
    assert result.passed == 3 and target.read_text() == "x"


def test_files_inside_the_working_directory_are_fine():
    code = "open('scratch.txt', 'w').write('1')\nassert open('scratch.txt').read() == '1'\n" + GOOD
    assert run(code)[0].passed == 3


def test_the_whole_process_group_dies_on_timeout(tmp_path):
    # With the hook off and the process limit lifted the child can fork; the grandchild
    # must die with the group.
    pid_file = tmp_path / "grandchild.pid"
    code = (
        "import os, time\n"
        "try:\n"
        "    pid = os.fork()\n"
        "except OSError:\n"
        "    pid = -1\n"
        "if pid == 0:\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        f"open({str(pid_file)!r}, 'w').write(str(pid))\n"
        "while True:\n"
        "    pass\n"
    )
    limits = SandboxLimits(timeout_s=TIMEOUT, audit_hook=False, max_processes=None)
    result, elapsed = run(code, limits)
    assert result.timed_out and elapsed < TIMEOUT + SLACK
    pid = int(pid_file.read_text())
    assert pid > 0, "the child could not fork, so this test proves nothing"
    deadline = time.monotonic() + 5
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state in ("Z", "X"):
            break
        assert time.monotonic() < deadline, f"grandchild {pid} still running"
        time.sleep(0.01)


def test_bad_return_values_fail_only_their_test():
    code = (
        "def solve(xs):\n"
        "    if len(xs) == 1:\n"
        "        return {1}\n"  # a set is not JSON
        "    if not xs:\n"
        "        raise ValueError\n"
        "    return xs[::-1]\n"
    )
    result, _ = run(code)
    assert result.passed == 1 and result.outputs[1] is None and result.outputs[2] is None


def test_types_must_match_exactly():
    # Python says [True] == [1] and [2.0] == [2]; the JSON comparison does not.
    assert run("def solve(xs):\n    return [float(x) for x in xs[::-1]]\n")[0].passed == 1  # only [] passes
    tests = [{"args": [[1]], "output": [1]}, {"args": [[0]], "output": [0]}]
    assert (
        score_tests("def solve(xs):\n    return [bool(x) for x in xs]\n", "solve", tests, LIMITS).passed == 0
    )
    assert (
        score_tests("def solve(xs):\n    return [int(x) for x in xs]\n", "solve", tests, LIMITS).passed == 2
    )


def test_many_hangs_run_in_parallel_within_one_timeout():
    hang = "def solve(xs):\n    while True:\n        pass\n"
    start = time.monotonic()
    results = score_many([(hang, "solve", TESTS)] * 4, LIMITS, max_workers=4)
    assert [r.passed for r in results] == [0] * 4 and all(r.timed_out for r in results)
    assert time.monotonic() - start < TIMEOUT + SLACK


def test_task_reward_for_hostile_completions():
    task = get_task("coding", timeout_s=TIMEOUT)
    strict = get_task("coding", timeout_s=TIMEOUT, format_reward=0.0)
    row = task.generate(2, 1, seed=0)[0]
    comps = [completion(HOSTILE[name] + row["solution"]) for name in ("infinite loop at import", "fork bomb")]
    comps.append(completion(row["solution"]))
    cols = {"tests": [row["tests"]] * 3}
    start = time.monotonic()
    assert strict.reward(comps, **cols) == [0.0, 0.0, strict.max_reward]
    assert task.reward(comps, **cols) == [task.format_reward, task.format_reward, task.max_reward]
    assert time.monotonic() - start < 2 * (TIMEOUT + SLACK)


def test_limits_are_validated():
    with pytest.raises(ValueError, match="memory_mb"):
        SandboxLimits(memory_mb=1)
    with pytest.raises(ValueError, match="network_namespace"):
        SandboxLimits(network_namespace="maybe")
