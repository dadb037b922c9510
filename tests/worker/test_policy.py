"""The worker's settings, its policy check, the training child's environment and redaction,
without a server (tests/reliability/test_worker_policy.py performs the attacks end to end)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from e2h.tasks import get_task
from worker.policy import check_run
from worker.settings import CHILD_E2H_VARS, REDACTED, Redactor, WorkerSettings, child_environment, secret_values

REPO = Path(__file__).resolve().parents[2]


def dataset(path, **options) -> dict:
    return {"task": {"name": "dataset", "train_levels": [1], "options": {"path": path, **options}}}


@pytest.fixture
def roots(tmp_path: Path) -> WorkerSettings:
    (tmp_path / "data" / "datasets" / "saved_dir").mkdir(parents=True)
    return WorkerSettings(data_dir=tmp_path / "data")


def test_settings_read_the_environment_with_the_existing_names(monkeypatch, tmp_path):
    monkeypatch.setenv("E2H_WORKER_TOKEN", "tok-123456")
    monkeypatch.setenv("E2H_ALLOW_TRUST_REMOTE_CODE", "1")
    monkeypatch.setenv("E2H_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("E2H_DATA_ROOTS", raising=False)
    s = WorkerSettings()
    assert s.worker_token == "tok-123456" and s.allow_trust_remote_code is True
    assert s.allowed_data_roots() == [(tmp_path / "datasets").resolve()]  # the default: <data dir>/datasets
    assert s.allowed_model_roots() == [] and s.pass_hub_credentials is False and s.allow_hub_datasets is True
    monkeypatch.setenv("E2H_DATA_ROOTS", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    monkeypatch.setenv("E2H_MODEL_ROOTS", json.dumps([str(tmp_path / "m")]))
    s = WorkerSettings()
    assert s.allowed_data_roots() == [(tmp_path / "a").resolve(), (tmp_path / "b").resolve()]
    assert s.allowed_model_roots() == [(tmp_path / "m").resolve()]


@pytest.mark.parametrize(
    ("config", "field", "rule"),
    [
        (dataset("/etc/passwd"), "task.options.path", "E2H_DATA_ROOTS"),
        (dataset("data/datasets/../../secret.csv"), "task.options.path", "E2H_DATA_ROOTS"),
        (dataset("~/.cache/huggingface/token.json"), "task.options.path", "E2H_DATA_ROOTS"),
        (dataset("https://example.com/x.jsonl"), "task.options.path", "E2H_DATA_ROOTS"),
        (dataset("json", data_files={"train": ["/etc/x.json"]}), "task.options.data_files", "E2H_DATA_ROOTS"),
        (dataset("text", data_files="../.env"), "task.options.data_files", "E2H_DATA_ROOTS"),
        (dataset("org/data", data_files="../../x.json"), "task.options.data_files", "E2H_DATA_ROOTS"),
        (dataset("org/data", data_files="https://example.com/x"), "task.options.data_files", "URL"),
        (dataset(["x"]), "invalid config: task.options.path", "string"),  # the dataset task's options model
        ({"model": {"name_or_path": "/opt/models/private"}}, "model.name_or_path", "E2H_MODEL_ROOTS"),
        ({"model": {"name_or_path": "../m"}}, "model.name_or_path", "E2H_MODEL_ROOTS"),
        ({"model": {"trust_remote_code": True}}, "model.trust_remote_code", "E2H_ALLOW_TRUST_REMOTE_CODE"),
        ({"algorithm": {"grpo_kwargs": {"model_init_kwargs": {"trust_remote_code": True}}}},
         "invalid config: algorithm.grpo_kwargs", "model_init_kwargs"),
        ({"algorithm": {"grpo_kwargs": {"push_to_hub": True}}}, "invalid config: algorithm.grpo_kwargs", "push_to_hub"),
        ({"task": {"name": "coding", "options": {"timeout_s": 600}}}, "task.options.timeout_s",
         "E2H_SANDBOX_MAX_TIMEOUT_S"),
        ({"task": {"name": "coding", "options": {"memory_mb": 65536}}}, "task.options.memory_mb",
         "E2H_SANDBOX_MAX_MEMORY_MB"),
        ({"task": {"name": "coding", "options": {"max_workers": 64}}}, "task.options.max_workers",
         "E2H_SANDBOX_MAX_WORKERS"),
        ({"task": {"name": "coding", "options": {"network_namespace": "off"}}}, "task.options.network_namespace",
         "E2H_SANDBOX_MIN_NETWORK_NAMESPACE"),
        ({"algorithm": {"num_processes": 16}}, "algorithm.num_processes", "this worker's ceiling of 8"),
        ({"algorithm": {"max_completion_length": 100_000}}, "algorithm.max_completion_length", "E2H_RUN_CEILINGS"),
        ({"algorithm": {"per_device_train_batch_size": 1024, "num_generations": 8}},
         "algorithm.per_device_train_batch_size", "E2H_RUN_CEILINGS"),
    ],
)
def test_refused_naming_the_field_and_the_rule(roots, monkeypatch, tmp_path, config, field, rule):
    monkeypatch.chdir(tmp_path)
    error = check_run(config, roots)
    assert error is not None and error.startswith(field) and rule in error, error


@pytest.mark.parametrize(
    "config",
    [
        {},
        dataset("data/datasets/mine.jsonl"),
        dataset("data/datasets/saved_dir", data_files="train.jsonl"),
        dataset("json", data_files={"train": "data/datasets/a.json", "test": ["data/datasets/b.json"]}),
        dataset("org/data"),
        dataset("org/data", data_files="sub/train.parquet"),
        {"model": {"name_or_path": "Qwen/Qwen2.5-0.5B-Instruct"}},
        {"task": {"name": "coding", "options": {"timeout_s": 2, "memory_mb": 256, "network_namespace": "require"}}},
    ],
)
def test_allowed(roots, monkeypatch, tmp_path, config):
    monkeypatch.chdir(tmp_path)
    assert check_run(config, roots) is None


def test_the_worker_has_its_own_ceilings(monkeypatch):
    monkeypatch.setenv("E2H_RUN_CEILINGS", '{"algorithm.max_completion_length": 32}')
    s = WorkerSettings()
    assert s.ceilings()["algorithm.max_completion_length"] == 32 and s.ceilings()["algorithm.num_processes"] == 8
    error = check_run({"algorithm": {"max_completion_length": 48}}, s)
    assert error.startswith("algorithm.max_completion_length: 48 is above this worker's ceiling of 32"), error
    monkeypatch.setenv("E2H_RUN_CEILINGS", '{"algorithm.num_gpus": 1}')
    with pytest.raises(ValueError, match="unknown fields"):
        WorkerSettings()


def test_operator_switches(roots, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "m").mkdir(parents=True)
    no_hub = roots.model_copy(update={"allow_hub_datasets": False})
    assert "E2H_ALLOW_HUB_DATASETS" in check_run(dataset("org/data"), no_hub)
    assert check_run(dataset("json", data_files="data/datasets/a.json"), no_hub) is None  # a builder is not the hub
    local_model = {"model": {"name_or_path": "models/m"}}
    assert check_run(local_model, roots) is not None
    assert check_run(local_model, roots.model_copy(update={"model_roots": [Path("models")]})) is None
    remote = {"model": {"trust_remote_code": True}}
    assert check_run(remote, roots.model_copy(update={"allow_trust_remote_code": True})) is None


def test_a_symlink_in_a_data_root_pointing_outside_is_refused(roots, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    secret = tmp_path / "secret.jsonl"
    secret.write_text("{}\n")
    (tmp_path / "data" / "datasets" / "link.jsonl").symlink_to(secret)
    assert "outside" in check_run(dataset("data/datasets/link.jsonl"), roots)


def test_the_child_environment_holds_no_credentials(tmp_path):
    environ = {
        "PATH": "/usr/bin", "HOME": "/home/u", "HF_HOME": "/hf", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "0",
        "OMP_NUM_THREADS": "1", "PYTHONPATH": "/src", "E2H_CPU_THREADS": "2",
        "E2H_WORKER_TOKEN": "worker-secret-1", "E2H_API_TOKEN": "api-secret-12",
        "E2H_DATABASE_URL": "postgresql://u:dbpass123@db/e2h", "HF_TOKEN": "hf_abcdefghijkl",
        "HUGGING_FACE_HUB_TOKEN": "hf_mnopqrstuvw", "AWS_SECRET_ACCESS_KEY": "aws-secret-99",
        "DB_PASSWORD": "pw-123456",
        "GITHUB_TOKEN": "ghp_1234567890", "OTHER_URL": "https://user:urlpass99@host/x",
    }
    env = child_environment(WorkerSettings(), environ, tmp_path)
    for name in ("PATH", "HOME", "HF_HOME", "HF_HUB_OFFLINE", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS",
                 "PYTHONPATH", "E2H_CPU_THREADS"):
        assert env[name] == environ[name]
    assert env["E2H_TRAIN_LOG_CAPTURED"] == "1" and env["TOKENIZERS_PARALLELISM"] == "false"
    credentials = ("E2H_WORKER_TOKEN", "E2H_API_TOKEN", "E2H_DATABASE_URL", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
                   "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "GITHUB_TOKEN", "OTHER_URL")
    assert not set(credentials) & set(env), env
    assert not {environ[name] for name in credentials} & set(env.values()), env
    # The stored hub login (huggingface-cli login) is out of reach too.
    assert not Path(env["HF_TOKEN_PATH"]).exists() and env["HF_HUB_DISABLE_IMPLICIT_TOKEN"] == "1"
    opted_in = child_environment(WorkerSettings(pass_hub_credentials=True), environ, tmp_path)
    assert opted_in["HF_TOKEN"] == environ["HF_TOKEN"] and "HF_TOKEN_PATH" not in opted_in
    assert "E2H_WORKER_TOKEN" not in opted_in and "GITHUB_TOKEN" not in opted_in


def test_every_e2h_variable_the_training_code_reads_reaches_the_child():
    # The child's environment keeps only the E2H_* variables it is known to read: a new one in the
    # training code must be added to CHILD_E2H_VARS (or it silently never arrives).
    not_training = {"cli.py", "stack.py", "runs_cli.py", "client.py", "settings.py"}  # settings: the client's
    named = {
        name
        for path in (REPO / "e2h").rglob("*.py")
        if path.name not in not_training
        for name in re.findall(r"[\"'](E2H_[A-Z0-9_]+)[\"']", path.read_text())
    }
    assert "E2H_CPU_THREADS" in named
    assert named <= CHILD_E2H_VARS, sorted(named - CHILD_E2H_VARS)


def test_redactor_finds_the_workers_secrets_and_replaces_them(tmp_path):
    (tmp_path / "token").write_text("hf_storedlogin123\n")
    environ = {"HF_HOME": str(tmp_path), "HF_TOKEN": "hf_abcdefghijkl", "MY_API_KEY": "k-0123456789",
               "SHORT_TOKEN": "abc", "E2H_DATABASE_URL": "postgresql://u:dbpass123@db/e2h", "LANG": "C.UTF-8"}
    secrets = secret_values(WorkerSettings(worker_token="wtok-secret-1"), environ)
    assert secrets == {"wtok-secret-1", "hf_abcdefghijkl", "k-0123456789", "dbpass123", "hf_storedlogin123"}
    r = Redactor(secrets)
    assert r.text("token wtok-secret-1 and hf_abcdefghijkl!") == f"token {REDACTED} and {REDACTED}!"
    assert r.json({"lines": ["k-0123456789", 1.5], "hf_storedlogin123": None}) == {"lines": [REDACTED, 1.5],
                                                                                   REDACTED: None}


def test_dataset_loader_errors_name_the_path_never_the_contents(tmp_path):
    secret = "sk-live-THIS-IS-A-FAKE-SECRET"
    cases = {
        "headerless.csv": f"API_KEY={secret}\nDB_KEY={secret}\n",
        "text.jsonl": f"{secret}\n",
        "strings.jsonl": json.dumps(secret) + "\n",
        "array.json": json.dumps([secret]),
        "level.jsonl": json.dumps({"question": "q", "answer": "a", "level": secret}) + "\n",
        "binary.jsonl": b"\xff\xfe" + secret.encode(),
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(ValueError) as info:
            get_task("dataset", path=str(path))
        message = str(info.value)
        assert message.startswith("task.options.path") and str(path) in message, message
        assert "FAKE" not in message and "API_KEY" not in message, message
        # A traceback prints chained exceptions too: none may carry the parser's own message.
        assert info.value.__context__ is None or info.value.__suppress_context__, "no chained original error"


def test_a_config_the_check_cannot_read_is_refused_not_raised(roots):
    error = check_run(dataset("data/datasets/a\x00b.jsonl"), roots)
    assert error is not None and "policy" in error, error
