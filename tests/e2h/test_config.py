import dataclasses
import json

import pytest

from e2h.config import (
    DEFAULT_CEILINGS,
    GRPO_KWARGS_ALLOWED,
    GRPO_KWARGS_FIRST_CLASS,
    GRPO_KWARGS_REFUSED,
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    RunConfig,
    ceiling_errors,
    compose,
    json_depth,
    list_presets,
    load_config_file,
    load_preset,
)


def test_empty_config_is_the_tiny_vrex_arithmetic_run():
    c = RunConfig.model_validate({})
    assert c.model.name_or_path == "builtin:tiny"
    assert c.task.name == "arithmetic"
    assert c.scheduler.name == "variance_regularized"
    assert c.task.train_levels == [0, 1, 2, 3, 4] and 5 in c.task.test_levels
    assert c.num_levels == 5


def test_presets_mirror_the_seed():
    p = list_presets()
    assert {"tiny", "qwen15", "qwen3b", "llama3b"} <= set(p["model"])
    assert {"countdown2345", "arithmetic", "blocksworld", "coding"} <= set(p["task"])
    assert {"grpo", "grpo_variance_regularized"} <= set(p["algorithm"])
    assert len(p["scheduler"]) == 6
    qwen = load_preset("model", "qwen15")["model"]
    assert qwen["lora"] == {"r": 32, "alpha": 64, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}  # E2H's
    assert qwen["dtype"] == "bfloat16"


def test_compose_presets_then_dotted_overrides():
    c = compose(["task=countdown2345", "algorithm=grpo_variance_regularized", "algorithm.max_steps=500",
                 "scheduler.params.min_prob=0.05"])
    assert c.task.train_levels == [2, 3, 4, 5] and c.task.test_levels == [2, 3, 4, 5, 6]
    assert (c.task.format_reward, c.task.correctness_reward) == (0.1, 0.9)
    assert c.scheduler.params["warmup_steps"] == 100 and c.scheduler.params["min_prob"] == 0.05
    assert c.output_name().startswith("tiny_countdown_grpo_variance_regularized_variance_regularized_")
    assert c.output_name().endswith("_500")


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["task.name=nope"], "task.name"),
        (["scheduler.name=nope"], "scheduler.name"),
        (["scheduler=gaussian", "scheduler.params.sigma=-1"], "scheduler.params.sigma"),
        (["scheduler.params.min_prob=0.5"], "min_prob=0.5"),
        (["algorithm=grpo_variance_regularized", "algorithm.max_steps=50"], "warmup_steps=100"),
        (["algorithm.num_generations=3"], "algorithm.num_generations"),
        (["algorithm.num_generations=4", "algorithm.per_device_train_batch_size=2",
          "algorithm.gradient_accumulation_steps=4", "algorithm.steps_per_generation=1"],
         "per_device_train_batch_size x num_processes x steps_per_generation = 2"),
        (["algorithm.steps_per_generation=0"], "steps_per_generation"),
        (["algorithm.num_iterations=0"], "num_iterations"),
        (["algorithm.grpo_kwargs={steps_per_generation: 1}"], "set algorithm.steps_per_generation instead"),
        (["algorithm.grpo_kwargs={generation_batch_size: 8}"], "set algorithm.steps_per_generation instead"),
        (["algorithm.grpo_kwargs={num_iterations: 2}"], "set algorithm.num_iterations instead"),
        (["task.train_levels=[0,9]"], "task.train_levels"),
        (["model=nope"], "unknown model preset 'nope'"),
        (["algorithm.nonsense=1"], "nonsense"),
        (["justakey"], "not key=value"),
    ],
)
def test_bad_configs_name_the_field(overrides, needle):
    with pytest.raises(ValueError, match=needle.replace("[", r"\[")):
        compose(overrides)


def test_generation_batch_follows_steps_per_generation():
    default = compose(["algorithm.per_device_train_batch_size=4", "algorithm.gradient_accumulation_steps=3",
                       "algorithm.num_generations=4"])
    assert default.algorithm.generation_batch_size == 12  # TRL's default: one generation per step
    assert default.algorithm.geometry().generate_every == 3
    e2h = compose(["algorithm.per_device_train_batch_size=4", "algorithm.gradient_accumulation_steps=3",
                   "algorithm.num_generations=4", "algorithm.steps_per_generation=1", "algorithm.num_iterations=2",
                   "algorithm.num_processes=2"])
    assert e2h.algorithm.generation_batch_size == 8
    assert e2h.algorithm.geometry().generate_every == 2


def test_config_file_round_trip(tmp_path):
    c = compose(["scheduler=sec", "algorithm.max_steps=7"])
    path = tmp_path / "c.json"
    path.write_text(c.model_dump_json())
    assert RunConfig.model_validate(load_config_file(path)) == c
    yml = tmp_path / "c.yaml"
    yml.write_text("scheduler:\n  name: cosine\n")
    assert compose([], base=load_config_file(yml)).scheduler.name == "cosine"
    with pytest.raises(ValueError, match="does not exist"):
        load_config_file(tmp_path / "missing.json")


def test_json_schema_is_exported():
    schema = RunConfig.model_json_schema()
    assert {"model", "task", "algorithm", "scheduler"} <= schema["properties"].keys()
    json.dumps(schema)


def test_grpo_translation_and_peft():
    from e2h.plan import grpo_config_kwargs
    from e2h.train import peft_config_for

    c = compose(["model=qwen15", "algorithm.use_vllm=true", "algorithm.vllm_mode=server",
                 "algorithm.grpo_kwargs={loss_type: dr_grpo}", "algorithm.num_iterations=2"])
    with pytest.raises(ValueError, match="server mode needs the managed vLLM server's ports"):
        grpo_config_kwargs(c, "/out", use_cpu=False)
    kw = grpo_config_kwargs(c, "/out", use_cpu=False, vllm_ports={"vllm_server_port": 41000, "vllm_group_port": 41001})
    assert (kw["vllm_server_host"], kw["vllm_server_port"], kw["vllm_group_port"]) == ("127.0.0.1", 41000, 41001)
    assert kw["bf16"] is True and kw["use_vllm"] is True and kw["vllm_mode"] == "server"
    assert kw["loss_type"] == "dr_grpo" and kw["num_iterations"] == 2
    assert kw["ignore_data_skip"] is True and kw["learning_rate"] == 1e-6
    lora = peft_config_for(c)
    assert (lora.r, lora.lora_alpha, sorted(lora.target_modules)) == (32, 64, ["q_proj", "v_proj"])
    assert peft_config_for(compose(["model=tiny"])) is None
    from trl import GRPOConfig

    args = GRPOConfig(**grpo_config_kwargs(compose(["algorithm.num_iterations=2"]), "/tmp/x", True))
    assert args.num_iterations == 2 and args.max_completion_length == 48
    with pytest.raises(ValueError, match="max_steps: set algorithm.max_steps instead"):
        compose(["algorithm.grpo_kwargs={max_steps: 3}"])
    # A config built without validation still cannot override what e2h sets, or pass a refused key.
    for key in ("max_steps", "push_to_hub"):
        unchecked = c.model_copy(update={"algorithm": c.algorithm.model_copy(update={"grpo_kwargs": {key: 1}})})
        with pytest.raises(ValueError, match=key):
            grpo_config_kwargs(unchecked, "/out", True)


# -- algorithm.grpo_kwargs: the allowlist -------------------------------------------------

# One accepted value for every allowlisted key, all together (what a submitter may tune).
GRPO_SAMPLE = {
    "loss_type": "dr_grpo", "epsilon": 0.2, "epsilon_high": 0.28, "delta": 1.5,
    "importance_sampling_level": "sequence", "sapo_temperature_neg": 1.05, "sapo_temperature_pos": 1.0,
    "vespo_k_pos": 2.0, "vespo_lambda_pos": 3.0, "vespo_k_neg": 3.0, "vespo_lambda_neg": 2.0,
    "off_policy_mask_threshold": 0.5, "mask_truncated_completions": True, "top_entropy_quantile": 0.2,
    "use_bias_correction_kl": False, "entropy_coef": 0.01, "use_adaptive_entropy": True,
    "entropy_coef_min": 0.0, "entropy_coef_max": 0.5, "entropy_coef_delta": 0.01, "entropy_target": 0.3,
    "vllm_importance_sampling_correction": False, "vllm_importance_sampling_mode": "token_truncate",
    "vllm_importance_sampling_clip_max": 2.0, "vllm_importance_sampling_clip_min": 0.5,
    "vllm_importance_sampling_cap": None, "scale_rewards": "batch", "sync_ref_model": True,
    "ref_model_mixup_alpha": 0.5, "ref_model_sync_steps": 64, "disable_dropout": True,
    "cast_lm_head_to_fp32": False, "router_aux_loss_coef": 0.001, "top_p": 0.95, "top_k": 50, "min_p": 0.05,
    "repetition_penalty": 1.1, "vllm_gpu_memory_utilization": 0.5, "optim": "adamw_torch",
    "lr_scheduler_type": "cosine_with_min_lr", "lr_scheduler_kwargs": {"min_lr_rate": 0.1},
    "warmup_steps": 0.1, "weight_decay": 0.01, "max_grad_norm": 0.5, "adam_beta1": 0.9, "adam_beta2": 0.99,
    "adam_epsilon": 1e-6, "gradient_checkpointing_kwargs": {"use_reentrant": False},
}  # fmt: skip


def test_every_allowlisted_key_reaches_trl_grpo_config():
    from trl import GRPOConfig

    from e2h.plan import grpo_config_kwargs

    assert set(GRPO_SAMPLE) == GRPO_KWARGS_ALLOWED  # a new allowed key needs a sample value here
    config = RunConfig.model_validate({"algorithm": {"grpo_kwargs": GRPO_SAMPLE}})
    kwargs = grpo_config_kwargs(config, "/tmp/x", use_cpu=True)
    args = GRPOConfig(**kwargs)
    for key, value in GRPO_SAMPLE.items():
        assert getattr(args, key) == value, key
    # None of them overrides what e2h sets itself.
    assert not GRPO_KWARGS_ALLOWED & set(grpo_config_kwargs(RunConfig(), "/tmp/x", use_cpu=True))


def test_the_allowlist_and_the_refusals_name_real_grpo_config_fields():
    """A TRL upgrade that renames a field fails here, so the lists are re-decided, not stale."""
    from trl import GRPOConfig

    fields = {f.name for f in dataclasses.fields(GRPOConfig) if f.init}
    named = GRPO_KWARGS_ALLOWED | set(GRPO_KWARGS_FIRST_CLASS) | set(GRPO_KWARGS_REFUSED)
    assert named - fields == set()
    assert not GRPO_KWARGS_ALLOWED & (set(GRPO_KWARGS_FIRST_CLASS) | set(GRPO_KWARGS_REFUSED))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"trust_remote_code": True}, "trust_remote_code: refused: it would run the model repository's Python"),
        ({"model_init_kwargs": {"trust_remote_code": True}}, "model_init_kwargs: refused: it decides how the worker"),
        ({"push_to_hub": True, "hub_token": "hf_x"}, "push_to_hub: refused: .* Hugging Face account.*also refused: "
                                                     "hub_token"),
        ({"hub_token": "hf_x"}, "hub_token: refused: it is a secret"),
        ({"vllm_server_base_url": "http://evil:8000"}, "vllm_server_base_url: refused: .*another host"),
        ({"output_dir": "/etc"}, "output_dir: refused: it is a file path on the worker"),
        ({"deepspeed": "/tmp/ds.json"}, "deepspeed: refused: it is a file path"),
        ({"report_to": "wandb"}, "report_to: refused: .*outside service"),
        ({"generation_kwargs": {"max_new_tokens": 100000}}, "generation_kwargs: refused: .*ceilings"),
        ({"save_strategy": "no"}, "save_strategy: refused: it is set by e2h"),
        ({"learning_rate": 1.0}, "learning_rate: set algorithm.learning_rate instead"),
        ({"reward_weights": [1.0]}, "reward_weights: set task.format_reward and task.correctness_reward"),
        ({"warmup_ratio": 0.1}, "warmup_ratio: refused: it is not on the allowlist.*warmup_steps"),
        ({"epsilon": -0.1}, "epsilon: Input should be greater than or equal to 0"),
        ({"top_p": 1.5}, "top_p: Input should be less than or equal to 1"),
        ({"loss_type": "ppo"}, "loss_type: Input should be 'grpo'"),
        ({"lr_scheduler_kwargs": {"min_lr_rate": "x"}}, "lr_scheduler_kwargs.min_lr_rate"),
    ],
)
def test_grpo_kwargs_outside_the_allowlist_are_refused_naming_key_and_reason(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        RunConfig.model_validate({"algorithm": {"grpo_kwargs": kwargs}})


def test_allowed_grpo_kwargs_are_stored_as_validated():
    c = RunConfig.model_validate({"algorithm": {"grpo_kwargs": {"top_k": "5", "scale_rewards": False}}})
    assert c.algorithm.grpo_kwargs == {"top_k": 5, "scale_rewards": False}


# -- free-form JSON and bounds ---------------------------------------------------------------


def _nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize("section,field", [("task", "options"), ("scheduler", "params"),
                                           ("algorithm", "grpo_kwargs")])
def test_free_form_fields_have_a_depth_and_a_size_limit(section, field):
    for bad, needle in [(_nested(MAX_JSON_DEPTH + 1), f"nested more than {MAX_JSON_DEPTH} levels"),
                        (_nested(500), f"nested more than {MAX_JSON_DEPTH} levels"),
                        ({"k": "x" * MAX_JSON_BYTES}, f"above the limit of {MAX_JSON_BYTES} bytes")]:
        with pytest.raises(ValueError, match=f"{section}.{field}\n.*{needle}"):
            RunConfig.model_validate({section: {field: bad}})
    # At the depth limit the depth check passes (the field's own rules judge the content).
    assert json_depth(_nested(MAX_JSON_DEPTH)) == MAX_JSON_DEPTH


def test_json_depth_needs_no_recursion():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert json_depth(deep) == MAX_JSON_DEPTH + 1  # stops walking once past the limit
    assert json_depth(1) == 0 and json_depth({"a": [1]}) == 2


@pytest.mark.parametrize("overrides,needle", [
    (["algorithm.max_completion_length=2000000"], "algorithm.max_completion_length\n.*less than or equal to"),
    (["algorithm.per_device_train_batch_size=100000"], "per_device_train_batch_size\n.*less than or equal"),
    (["algorithm.num_generations=5000"], "num_generations\n.*less than or equal to 4096"),
    (["algorithm.learning_rate=2"], "learning_rate\n.*less than or equal to 1"),
    (["algorithm.seed=-1"], "seed\n.*greater than or equal to 0"),
    (["model.lora={r: 5000}"], "model.lora.r\n.*less than or equal to 4096"),
    (["model.lora={target_modules: ['']}"], "target_modules.0\n.*at least 1 character"),
    (["task.name=dataset", "task.options={path: x}", "task.train_levels=[-1]"],
     "train_levels.0\n.*greater than or equal to 0"),
    (["task.name=" + "t" * 65], "task.name\n.*at most 64 characters"),
])
def test_resource_fields_have_finite_static_bounds(overrides, needle):
    with pytest.raises(ValueError, match=needle):
        compose(overrides)


def test_ceilings_name_the_field_the_limit_and_the_fix():
    ceilings = {**DEFAULT_CEILINGS, "algorithm.max_completion_length": 64, "model.lora.r": 8}
    assert ceiling_errors(RunConfig(), ceilings, "E2H_RUN_CEILINGS") == []  # no LoRA: its rank is not checked
    c = compose(["algorithm.max_completion_length=65", "model.lora={r: 16}", "algorithm.max_prompt_length=null"])
    found = dict(ceiling_errors(c, ceilings, "E2H_RUN_CEILINGS"))
    assert set(found) == {"algorithm.max_completion_length", "model.lora.r", "algorithm.max_prompt_length"}
    assert found["algorithm.max_completion_length"] == (
        "algorithm.max_completion_length: 65 is above this server's ceiling of 64; set it to at most 64 "
        "(the operator sets ceilings with E2H_RUN_CEILINGS)")
    assert "null means no limit" in found["algorithm.max_prompt_length"]
    # Every preset fits the default ceilings.
    for group, names in list_presets().items():
        for name in names:
            config = compose([f"{group}={name}"] + (["algorithm.max_steps=200"] if group == "scheduler" else []))
            assert ceiling_errors(config, DEFAULT_CEILINGS, "x") == [], (group, name)
