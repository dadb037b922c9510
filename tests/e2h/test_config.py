import json

import pytest

from e2h.config import RunConfig, compose, list_presets, load_config_file, load_preset


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
    assert qwen["lora"] == {"r": 32, "alpha": 64, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
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
        (["algorithm.max_steps=50"], "warmup_steps=100"),
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
    from e2h.train import grpo_config_kwargs, peft_config_for

    c = compose(["model=qwen15", "algorithm.use_vllm=true", "algorithm.vllm_mode=server",
                 "algorithm.grpo_kwargs={loss_type: dr_grpo}", "algorithm.num_iterations=2"])
    kw = grpo_config_kwargs(c, "/out", use_cpu=False)
    assert kw["bf16"] is True and kw["use_vllm"] is True and kw["vllm_mode"] == "server"
    assert kw["loss_type"] == "dr_grpo" and kw["num_iterations"] == 2
    assert kw["ignore_data_skip"] is True and kw["learning_rate"] == 1e-6
    lora = peft_config_for(c)
    assert (lora.r, lora.lora_alpha, sorted(lora.target_modules)) == (32, 64, ["q_proj", "v_proj"])
    assert peft_config_for(compose(["model=tiny"])) is None
    from trl import GRPOConfig

    args = GRPOConfig(**grpo_config_kwargs(compose(["algorithm.num_iterations=2"]), "/tmp/x", True))
    assert args.num_iterations == 2 and args.max_completion_length == 48
    with pytest.raises(ValueError, match="max_steps"):
        grpo_config_kwargs(compose(["algorithm.grpo_kwargs={max_steps: 3}"]), "/out", True)
