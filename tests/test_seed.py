"""The published seed setup, like for like: the raw seed prompt byte for byte (eval and training),
the seed recipes, and a real training step with the seed prompt and rewards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from grpo_gsm8k.cli import main

SEED_RECIPES = sorted((REPO / "recipes" / "seed").glob("*.yaml"))
# The published instruction, as prepare_gsm8k.py of the public grpo_gsm8k repository writes it
# (PROMPT + " " + question), kept here as bytes so that any edit of prompts.py shows.
PUBLISHED_INSTRUCTION = (
    b"You are a careful math tutor. Show concise reasoning, then write your final answer on its "
    b"own line, prefixed by four hash marks. For example, if the final answer is 8, your last line "
    b"should be #### 8."
)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_seed_prompt_is_the_published_text_byte_for_byte(prepared: Path) -> None:
    from grpo_gsm8k.data import load_prepared
    from grpo_gsm8k.prompts import (
        SEED_INSTRUCTION,
        prompt_template,
        render_prompt,
        resolve_prompt_style,
    )

    assert SEED_INSTRUCTION.encode() == PUBLISHED_INSTRUCTION
    for row in load_prepared(prepared / "eval.jsonl")[:20]:
        sent = render_prompt(row.question, None, "seed").encode("utf-8")
        assert sent == PUBLISHED_INSTRUCTION + b" " + row.question.encode("utf-8")
    assert resolve_prompt_style("seed", None) == "seed"
    identity = prompt_template("seed", None)
    assert identity["style"] == "seed" and identity["chat_template_sha256"] is None
    assert len(identity["seed_template_sha256"]) == 64
    assert "seed_template_sha256" not in prompt_template("raw", None)  # other records unchanged


def test_eval_sends_the_seed_prompt(prepared: Path, tmp_path: Path) -> None:
    """``grpo-gsm8k eval smollm2-135m --prompt seed``: the text sent is the published one, and
    no chat template is applied though the model has one."""
    from transformers import AutoTokenizer

    out = tmp_path / "seed-eval"
    args = ["eval", "smollm2-135m", "--data", str(prepared / "eval.jsonl"), "--limit", "2"]
    args += ["--prompt", "seed", "--backend", "hf", "--max-new-tokens", "8", "--out", str(out)]
    assert main(args) == 0
    rows = read_jsonl(out / "samples.jsonl")
    assert len(rows) == 2
    for row in rows:
        assert row["prompt"].encode() == PUBLISHED_INSTRUCTION + b" " + row["question"].encode()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prompt_style"] == "seed"
    assert summary["prompt_template"]["style"] == "seed"
    tokenizer = AutoTokenizer.from_pretrained(summary["model_path"])
    assert (
        "seed" in summary["command"] and summary["prompt_template"]["chat_template_sha256"] is None
    )
    assert tokenizer.chat_template  # a chat model, yet no template was applied


@pytest.mark.parametrize("recipe", SEED_RECIPES, ids=[p.stem for p in SEED_RECIPES])
def test_seed_recipes_parse_with_the_published_settings(
    prepared: Path, tmp_path: Path, recipe: Path
) -> None:
    from grpo_gsm8k.training.recipe import parse_train_args

    script, config = parse_train_args(
        [
            "--config", str(recipe),
            "--train_file", str(prepared / "train.jsonl"),
            "--eval_file", str(prepared / "eval.jsonl"),
            "--output_dir", str(tmp_path),
            "--model", "smollm2-135m",
            "--max_steps", "1",
            "--use_cpu", "true",  # the recipe's bf16 is allowed on CPU only with use_cpu
        ]
    )  # fmt: skip
    assert script.prompt_style == "seed"
    assert script.rewards == ["format_seed", "accuracy_seed", "length_seed"]
    assert config.max_steps == 1
    # their flags, and TRL 0.19's defaults where they set none
    assert (config.loss_type, config.scale_rewards, config.beta) == ("dr_grpo", "group", 0.0)
    assert config.learning_rate == 5e-6 and config.lr_scheduler_type == "constant_with_warmup"
    assert config.warmup_steps == 10 and config.num_train_epochs == 1
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps) == (32, 1)
    assert (config.num_generations, config.max_completion_length) == (4, 512)
    assert config.temperature == 0.7 and config.top_p == 1.0
    assert config.disable_dropout and config.log_completions and config.logging_steps == 1
    assert config.bf16 and config.gradient_checkpointing
    assert config.model_init_kwargs == {"dtype": "bfloat16"}  # theirs: pure bf16 weights
    assert not config.use_vllm  # they generated with transformers
    text = recipe.read_text()
    assert "seed-derived" in text and "ishanjmukherjee/gsm8k-grpo" in text
    assert yaml.safe_load(text)["model"] in (
        "Qwen/Qwen2.5-3B-Instruct",
        "meta-llama/Llama-2-7b-chat-hf",
    )


@pytest.mark.slow
def test_seed_recipe_trains_one_step_and_records_the_seed_prompt(
    prepared: Path, tmp_path: Path
) -> None:
    """A real step of the seed recipe's prompt and rewards on the embedded model (a 3B model
    does not fit this test): the record says prompt_template.style seed, the three seed rewards
    scored the completions, and TRL's group-scaled Dr GRPO loss ran."""
    out = tmp_path / "seed"
    args = [
        "train", "--config", str(SEED_RECIPES[0]),
        "--model", "smollm2-135m",
        "--train_file", str(prepared / "train.jsonl"),
        "--eval_file", str(prepared / "eval.jsonl"),
        "--output_dir", str(out),
        "--max_steps", "1",
        # shrunk to seconds: 1 prompt x 4 completions x 16 tokens, fp32 on CPU
        "--per_device_train_batch_size", "4",
        "--max_completion_length", "16",
        "--use_cpu", "true", "--bf16", "false", "--gradient_checkpointing", "false",
        "--model_init_kwargs", '{"dtype": "float32"}',
        "--save_steps", "1",
    ]  # fmt: skip
    assert main(args) == 0
    config = json.loads((out / "grpo_gsm8k_config.json").read_text())
    assert config["prompt_template"]["style"] == "seed"
    assert len(config["prompt_template"]["seed_template_sha256"]) == 64
    assert config["grpo_gsm8k"]["prompt_style"] == "seed"
    assert config["grpo_config"]["scale_rewards"] == "group"
    assert config["grpo_config"]["disable_dropout"] is True
    assert config["generation_dtype"] == config["learner_dtype"] == "float32"
    completions = read_jsonl(out / "completions.jsonl")
    assert set(completions[0]["rewards"]) == {"format_seed", "accuracy_seed", "length_seed"}
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics if "rewards/format_seed/mean" in m] == [1]
