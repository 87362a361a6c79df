"""`grpo-gsm8k train` / `export`: bad input fails fast; real tiny runs on the embedded model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from grpo_gsm8k.cli import main

CPU_RECIPE = str(REPO / "recipes" / "cpu-smollm2.yaml")
HF_PATH = ["--use_vllm", "false", "--bf16", "false"]  # see tiny()


def tiny(prepared: Path, out: Path, *extra: str) -> list[str]:
    """The CPU recipe shrunk to seconds per step: 2 prompts x 2 completions x 16 tokens."""
    return [
        "train",
        "--config",
        CPU_RECIPE,
        "--train_file",
        str(prepared / "train.jsonl"),
        "--eval_file",
        str(prepared / "eval.jsonl"),
        "--output_dir",
        str(out),
        "--per_device_train_batch_size",
        "4",
        "--num_generations",
        "2",
        "--max_completion_length",
        "16",
        "--eval_every",
        "1",
        "--eval_size",
        "2",
        "--eval_max_new_tokens",
        "16",
        "--save_steps",
        "1",
        # 16 tokens: every completion is cut off and earns the same reward, so the recipe's dynamic
        # sampling would only add generation rounds (tests/test_dynamic_sampling.py trains with it)
        "--dynamic_sampling_rounds",
        "0",
        # the transformers path on every machine: these runs test files, resume and launch;
        # tests/test_vllm_sync.py tests the vLLM-CPU path the machine may pick
        *HF_PATH,
        *extra,
    ]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("grpo-gsm8k train: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ----------------------------------------------------------------- bad input, before any model


def test_unknown_recipe_key_fails_in_one_line(prepared: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(Path(CPU_RECIPE).read_text() + "learning_rat: 1.0e-5\n")
    proc = subprocess.run(
        [sys.executable, "-m", "grpo_gsm8k.cli", "train", "--config", str(recipe)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "'learning_rat'" in error_line(proc.stderr)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--train_file", "/nonexistent/train.jsonl"], "train_file /nonexistent/train.jsonl"),
        (["--num_generations", "3"], "must be divisible by num_generations (3)"),
        (["--rewards", "accuracy", "speed"], "rewards: unknown speed"),
        (["--reward_weights", "1.0"], "reward_weights has 1 values for 3 rewards"),
        (["--reward_settings", '{"bonus": 1}'], "unknown reward setting(s) bonus"),
        (["--resume"], "no checkpoint-* folder"),
        (["--no_such_flag", "1"], "unknown argument(s) --no_such_flag"),
    ],
)
def test_bad_settings_fail_before_the_model_loads(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list, message: str
) -> None:
    assert main(tiny(prepared, tmp_path / "out", *extra)) == 2
    assert message in error_line(capsys.readouterr().err)
    assert not (tmp_path / "out" / "grpo_gsm8k_config.json").exists()


@pytest.mark.parametrize(
    "name", ["cpu-smollm2", "cpu-smollm2-accuracy", "qwen2.5-3b-instruct", "llama-2-7b-chat"]
)
def test_recipes_parse_with_dr_grpo(prepared: Path, tmp_path: Path, name: str) -> None:
    from grpo_gsm8k.training.recipe import parse_train_args

    script, config = parse_train_args(
        [
            "--config",
            str(REPO / "recipes" / f"{name}.yaml"),
            "--train_file",
            str(prepared / "train.jsonl"),
            "--eval_file",
            str(prepared / "eval.jsonl"),
            "--output_dir",
            str(tmp_path),
            "--learning_rate",
            "1e-5",
            # bf16 needs a GPU here; one process gives 16 of the GPU recipes' 128 prompts per step
            *([] if name.startswith("cpu-") else ["--bf16", "false", "--prompts_per_step", "16"]),
        ]
    )
    assert (config.loss_type, config.scale_rewards, config.beta) == ("dr_grpo", "none", 0.0)
    assert config.learning_rate == 1e-5  # the command line wins over the recipe
    assert script.rewards == ["accuracy", "format", "length"]
    if not name.startswith("cpu-"):
        assert config.use_vllm and config.vllm_mode == "colocate"
        assert config.num_generations == 4 and config.max_completion_length == 512
        assert config.per_device_train_batch_size * config.gradient_accumulation_steps == 64
        recipe = yaml.safe_load((REPO / "recipes" / f"{name}.yaml").read_text())
        assert (
            recipe["bf16"] and recipe["gradient_checkpointing"] and recipe["num_train_epochs"] == 1
        )


def test_training_prompt_is_eval_prompt(prepared: Path) -> None:
    from transformers import AutoTokenizer

    from grpo_gsm8k.data import load_prepared
    from grpo_gsm8k.models import resolve_model
    from grpo_gsm8k.prompts import prompt_ids, render_prompt
    from grpo_gsm8k.training.train import trl_prompt

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m").path)
    question = load_prepared(prepared / "train.jsonl")[0].question
    text = trl_prompt(question, tokenizer, "chat")
    # TRL tokenizes a text prompt with tokenizer(text); eval with prompt_ids(render_prompt(..))
    assert tokenizer(text)["input_ids"] == prompt_ids(
        tokenizer, render_prompt(question, tokenizer, "chat")
    )


def test_model_and_lora_fields_are_trl_model_config(prepared: Path, tmp_path: Path) -> None:
    from trl import ModelConfig

    from grpo_gsm8k.training.recipe import parse_train_args, peft_config

    args = tiny(prepared, tmp_path / "out")[1:]
    script, config = parse_train_args([*args, "--use_peft"])
    assert isinstance(script, ModelConfig)
    lora = peft_config(script)
    assert lora.target_modules == "all-linear"  # every linear layer, as before
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.bias) == (16, 32, 0.05, "none")
    assert str(lora.task_type).endswith("CAUSAL_LM")
    script, _ = parse_train_args([*args, "--use_peft", "--lora_target_modules", "q_proj", "v_proj"])
    assert set(peft_config(script).target_modules) == {"q_proj", "v_proj"}
    script, _ = parse_train_args(args)
    assert peft_config(script) is None
    script, config = parse_train_args([*args, "--dtype", "bfloat16"])
    assert config.model_init_kwargs == {"dtype": "bfloat16"}


def test_learning_rate_override_rescales_the_restored_schedule() -> None:
    import torch
    from transformers import get_scheduler

    from grpo_gsm8k.training.callbacks import LearningRateOverride

    def schedule(lr: float) -> tuple[torch.optim.Optimizer, object]:
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=lr)
        return optimizer, get_scheduler("linear", optimizer, 2, 10)

    optimizer, scheduler = schedule(5e-5)
    for _ in range(4):  # past the warmup, into the decay: 5e-5 x 8/8 -> x 6/8
        optimizer.step()
        scheduler.step()
    saved = (optimizer.state_dict(), scheduler.state_dict())
    optimizer, scheduler = schedule(1e-4)  # the resumed run, with a new rate
    optimizer.load_state_dict(saved[0])
    scheduler.load_state_dict(saved[1])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5e-5 * 6 / 8)  # the old rate, kept
    LearningRateOverride(1e-4).on_train_begin(
        None, None, None, optimizer=optimizer, lr_scheduler=scheduler
    )
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 * 6 / 8)
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 * 5 / 8)  # the schedule goes on


def test_eval_questions_are_split_across_ranks() -> None:
    from grpo_gsm8k.training.callbacks import rank_share

    assert rank_share(5, 0, 1) == [0, 1, 2, 3, 4]
    shares = [rank_share(5, rank, 2) for rank in (0, 1)]
    assert shares == [[0, 2, 4], [1, 3]]
    assert rank_share(1, 1, 2) == []  # a rank with no question still joins the gather


# ------------------------------------------------------------------------------ real training


@pytest.mark.slow
def test_train_two_steps_then_resume_to_three(prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(tiny(prepared, out, "--max_steps", "2")) == 0

    config = json.loads((out / "grpo_gsm8k_config.json").read_text())
    assert config["grpo_config"]["loss_type"] == "dr_grpo"
    assert config["grpo_config"]["scale_rewards"] == "none"
    assert config["grpo_gsm8k"]["rewards"] == ["accuracy", "format", "length"]
    assert len(config["data"]["train"]["sha256"]) == 64
    assert config["versions"]["trl"].startswith("1.16")
    # the same template identity as eval's summary records for this model and style
    from transformers import AutoTokenizer

    from grpo_gsm8k.models import resolve_model
    from grpo_gsm8k.prompts import prompt_template

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m").path)
    assert config["prompt_template"] == prompt_template("chat", tokenizer)

    metrics = read_jsonl(out / "metrics.jsonl")
    evals = [m for m in metrics if "eval/format_rate" in m]
    assert [m["step"] for m in evals] == [0, 1, 2]
    assert all(m["eval/n"] == 2 and "eval/accuracy_flexible" in m for m in evals)
    assert [m["step"] for m in metrics if "rewards/format/mean" in m] == [1, 2]

    # the reward functions got TRL's real keyword arguments, dataset columns included
    completions = read_jsonl(out / "completions.jsonl")
    assert {c["step"] for c in completions} == {1, 2}
    assert {"gold", "completion_ids", "trainer_state"} <= set(completions[0]["reward_kwargs"])
    assert set(completions[0]["rewards"]) == {"accuracy", "format", "length"}
    assert all(c["tokens"] <= 16 for c in completions)

    # the final model is a checkpoint that loads
    from transformers import AutoModelForCausalLM

    resolved = resolve_model(str(out))
    assert resolved.source == "local"
    AutoModelForCausalLM.from_pretrained(resolved.path)
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2

    # without --resume an existing run is not overwritten
    assert main(tiny(prepared, out, "--max_steps", "3")) == 2

    assert main(tiny(prepared, out, "--max_steps", "3", "--resume")) == 0
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    metrics = read_jsonl(out / "metrics.jsonl")
    train_steps = [m["step"] for m in metrics if "rewards/format/mean" in m]
    assert train_steps == [1, 2, 3]  # steps 1-2 were not run again
    record = json.loads((out / "grpo_gsm8k_config.json").read_text())
    assert record["resumes"][-1]["checkpoint"].endswith("checkpoint-2")
    assert record["resumes"][-1]["overrides"] == {}

    # a new learning rate: refused unless named, then in effect and appended to the record
    assert main(tiny(prepared, out, "--max_steps", "4", "--resume", "--learning_rate", "1e-4")) == 2
    override = ["--learning_rate", "1e-4", "--resume_override", "learning_rate"]
    assert main(tiny(prepared, out, "--max_steps", "4", "--resume", *override)) == 0
    metrics = read_jsonl(out / "metrics.jsonl")
    rates = {m["step"]: m["learning_rate"] for m in metrics if "rewards/format/mean" in m}
    assert rates[3] == pytest.approx(5e-5) and rates[4] == pytest.approx(1e-4)
    record = json.loads((out / "grpo_gsm8k_config.json").read_text())
    assert record["grpo_config"]["learning_rate"] == 5e-5  # the settings the run started with
    assert [r["checkpoint"][-12:] for r in record["resumes"]] == ["checkpoint-2", "checkpoint-3"]
    assert record["resumes"][-1]["overrides"] == {"learning_rate": [5e-5, 1e-4]}


@pytest.mark.slow
def test_lora_one_step_then_export(prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "lora"
    args = tiny(prepared, out, "--max_steps", "1", "--use_peft", "--lora_r", "4")
    args += ["--eval_every", "0", "--lora_target_modules", "q_proj", "v_proj"]
    assert main(args) == 0
    assert (out / "adapter_config.json").is_file()
    assert (out / "merged" / "config.json").is_file()

    exported = tmp_path / "exported"
    assert main(["export", str(out), "--out", str(exported)]) == 0
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(exported)
    AutoTokenizer.from_pretrained(exported)
