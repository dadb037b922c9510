"""The managed vLLM server's lifecycle, with a stand-in for `trl vllm-serve` (the real one needs CUDA)."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from e2h.plan import ProcessPlan, free_port
from e2h.vllm_server import ManagedVLLMServer, VLLMServerError

STANDIN = [sys.executable, "-m", "tests.e2h.vllm_standin"]


def _plan(port):
    return ProcessPlan("vllm", [*STANDIN, "--model", "m", "--port", str(port)], {"CUDA_VISIBLE_DEVICES": "0"}, port)


def _env(tmp_path, mode):
    return dict(os.environ, VLLM_STANDIN=mode, VLLM_STANDIN_RECORD=str(tmp_path / "record.json"))


def _gone(pid, within=10.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


def test_server_is_waited_for_and_stopped(tmp_path):
    port = free_port()
    with ManagedVLLMServer(_plan(port), tmp_path / "vllm.log", _env(tmp_path, "healthy")) as server:
        server.wait_healthy(deadline_s=30)
        record = json.loads((tmp_path / "record.json").read_text())
        assert record["cuda"] == "0" and record["argv"][-1] == str(port)
        pid = server.proc.pid
    assert _gone(pid)


def test_a_server_that_never_gets_healthy_fails_within_its_deadline(tmp_path):
    with ManagedVLLMServer(_plan(free_port()), tmp_path / "vllm.log", _env(tmp_path, "unhealthy")) as server:
        started = time.monotonic()
        with pytest.raises(VLLMServerError, match="not healthy .* after 3 s"):
            server.wait_healthy(deadline_s=3, poll_s=0.2)
        assert time.monotonic() - started < 8
        pid = server.proc.pid
    assert _gone(pid)


def test_a_server_that_exits_fails_at_once(tmp_path):
    server = ManagedVLLMServer(_plan(free_port()), tmp_path / "vllm.log", _env(tmp_path, "exit"))
    with server, pytest.raises(VLLMServerError, match="exited with code 3"):
        server.wait_healthy(deadline_s=60, poll_s=0.1)


def test_the_server_dies_with_its_owner_even_by_sigkill(tmp_path):
    port = free_port()
    owner = (
        "import sys, time\n"
        "from e2h.plan import ProcessPlan\n"
        "from e2h.vllm_server import ManagedVLLMServer\n"
        f"s = ManagedVLLMServer(ProcessPlan('vllm', {[*STANDIN, '--port', str(port)]!r}, {{}}, {port}), "
        f"{str(tmp_path / 'vllm.log')!r}).start()\n"
        "s.wait_healthy(30)\n"
        "print('up', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", owner], stdout=subprocess.PIPE, text=True,
                            env=_env(tmp_path, "healthy"))
    assert proc.stdout.readline().strip() == "up"
    pid = json.loads((tmp_path / "record.json").read_text())["pid"]
    assert psutil.pid_exists(pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert _gone(pid)


def _planned(tmp_path, train_exit):
    """E2H's layout planned on two (pretend) GPUs, the vLLM stand-in as server, and a stand-in trainer
    that checks it was given the server's port and can reach it, then exits with ``train_exit``."""
    from e2h.config import compose
    from e2h.plan import build_plan

    config = compose(["model=tiny", "algorithm.use_vllm=true", "algorithm.vllm_mode=server"])
    os.environ["E2H_VLLM_SERVE_COMMAND"] = " ".join(STANDIN)
    try:
        plan = build_plan(config, tmp_path, tmp_path / "config.json", [0, 1])
    finally:
        del os.environ["E2H_VLLM_SERVE_COMMAND"]
    check = ("import os, sys, urllib.request\n"
             "port = os.environ['E2H_VLLM_SERVER_PORT']\n"
             "assert os.environ['CUDA_VISIBLE_DEVICES'] == '1'\n"
             "assert urllib.request.urlopen(f'http://127.0.0.1:{port}/health').status == 200\n"
             f"sys.exit({train_exit})\n")
    plan.process("train").command = [sys.executable, "-c", check]
    return plan


@pytest.mark.parametrize("train_exit", [0, 1])
def test_run_plan_starts_the_server_first_and_stops_it_when_training_ends(tmp_path, train_exit):
    from e2h.launch import run_plan

    plan = _planned(tmp_path, train_exit)
    assert plan.process("vllm").command[:len(STANDIN)] == STANDIN
    assert run_plan(plan, tmp_path, _env(tmp_path, "healthy"), health_deadline_s=30) == train_exit
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["cuda"] == "0" and _gone(record["pid"])
    assert (tmp_path / "vllm.log").is_file()


def test_run_plan_fails_when_the_server_never_gets_healthy(tmp_path):
    from e2h.launch import run_plan

    plan = _planned(tmp_path, 0)
    with pytest.raises(VLLMServerError, match="not healthy"):
        run_plan(plan, tmp_path, _env(tmp_path, "unhealthy"), health_deadline_s=2)
    assert _gone(json.loads((tmp_path / "record.json").read_text())["pid"])
