"""Training settings: our fields + TRL's ``GRPOConfig``, from a YAML recipe and the command line.

``grpo-gsm8k train --config recipes/X.yaml --learning_rate 1e-5 --max_steps 2`` — the recipe sets
defaults, the command line overrides them (TRL's ``TrlParser``). Every field of both dataclasses
is a key; an unknown key is an error. Dr GRPO is the default: ``loss_type: dr_grpo``,
``scale_rewards: none``, ``beta: 0`` (no reference model).

Everything here is checked before a model loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OptionsError, RecipeError
from ..options import parse_options
from ..prompts import PROMPT_STYLES
from ..rewards import DEFAULT_REWARDS, REWARD_NAMES, RewardSettings

# What differs from GRPOConfig's own defaults when a recipe does not say otherwise.
DR_GRPO_DEFAULTS: dict[str, Any] = {
    "loss_type": "dr_grpo",
    "scale_rewards": "none",
    "beta": 0.0,
    "report_to": "none",
    "logging_steps": 1,
    "output_dir": "runs/grpo",
}


def train_defaults() -> dict[str, Any]:
    """Dr GRPO's defaults and this machine's precision/generation choice
    (:func:`grpo_gsm8k.hardware.choose_training`); a recipe and the command line override both."""
    from ..hardware import choose_training

    return {**DR_GRPO_DEFAULTS, **choose_training().settings}


@dataclass
class GSM8KArguments:
    """grpo-gsm8k's own training settings (TRL's GRPOConfig holds the trainer's)."""

    model: str = field(
        default="smollm2-135m",
        metadata={"help": "alias, local checkpoint/adapter folder or hub id (see `eval --model`)"},
    )
    train_file: str = field(
        default="data/train.jsonl", metadata={"help": "prepared training JSONL (id/question/gold)"}
    )
    eval_file: str | None = field(
        default="data/eval.jsonl",
        metadata={"help": "prepared eval JSONL for the in-training eval (first eval_size rows)"},
    )
    prompt_style: str = field(
        default="chat",
        metadata={
            "help": "prompt template, the same as eval's --prompt: chat, raw or auto (chat when "
            "the tokenizer has a chat template)",
            "choices": list(PROMPT_STYLES),
        },
    )
    rewards: list[str] = field(
        default_factory=lambda: list(DEFAULT_REWARDS),
        metadata={"help": f"reward functions, any of {', '.join(REWARD_NAMES)}"},
    )
    reward_settings: dict | str | None = field(
        default=None,
        metadata={"help": 'reward values, e.g. \'{"correct": 1.0, "format_ok": 0.2}\' (JSON)'},
    )
    eval_every: int = field(
        default=0, metadata={"help": "in-training greedy eval every N steps (0: off)"}
    )
    eval_size: int = field(default=32, metadata={"help": "questions in the in-training eval"})
    eval_at_start: bool = field(
        default=True, metadata={"help": "also run the in-training eval before the first step"}
    )
    eval_max_new_tokens: int | None = field(
        default=None, metadata={"help": "tokens per eval answer (default: max_completion_length)"}
    )
    eval_batch_size: int = field(default=32, metadata={"help": "prompts per eval generate call"})
    completions_per_step: int = field(
        default=4, metadata={"help": "sample completions saved to completions.jsonl per step"}
    )
    resume: bool = field(
        default=False, metadata={"help": "continue from the latest checkpoint in output_dir"}
    )
    prompts_per_step: int | None = field(
        default=None,
        metadata={
            "help": "expected prompts per optimizer step: per_device_train_batch_size x processes "
            "x gradient_accumulation_steps must equal it x num_generations (None: not checked)"
        },
    )
    use_peft: bool = field(default=False, metadata={"help": "train a LoRA adapter"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "LoRA target modules (default: all linear layers)"}
    )

    def __post_init__(self) -> None:
        from .distributed import check_environment

        check_environment()  # before GRPOConfig (parsed next) builds a DeepSpeed plugin
        if isinstance(self.reward_settings, str):
            try:
                self.reward_settings = json.loads(self.reward_settings)
            except json.JSONDecodeError as e:
                raise RecipeError(f"reward_settings: not JSON ({e.msg})") from None


def option_types() -> list[Any]:
    from trl import GRPOConfig

    return [GSM8KArguments, GRPOConfig]


def parse_train_args(argv: list[str]) -> tuple[GSM8KArguments, Any]:
    """``(GSM8KArguments, GRPOConfig)`` from ``[--config FILE] [--field value ...]``, checked."""
    try:
        script, config = parse_options(
            option_types(), argv, "grpo-gsm8k train", defaults=train_defaults()
        )
    except OptionsError as e:
        raise RecipeError(str(e)) from None
    check(script, config)
    return script, config


def check(script: GSM8KArguments, config: Any) -> None:
    """Settings that would otherwise fail only after the model has loaded."""
    from transformers.trainer_utils import get_last_checkpoint

    from .distributed import check_launch, check_resume_launch

    check_launch(config, script.prompts_per_step)
    if not Path(script.train_file).is_file():
        raise RecipeError(f"train_file {script.train_file}: file not found")
    if script.prompt_style not in PROMPT_STYLES:
        raise RecipeError(
            f"prompt_style must be one of {', '.join(PROMPT_STYLES)}, got {script.prompt_style!r}"
        )
    if config.max_steps == 0 or config.max_steps < -1:
        raise RecipeError(
            f"max_steps must be a positive number of steps (or -1: num_train_epochs decides), "
            f"got {config.max_steps}"
        )
    if Path(str(config.output_dir)).exists() and not Path(str(config.output_dir)).is_dir():
        raise RecipeError(f"output_dir {config.output_dir}: exists and is not a folder")
    if script.eval_every < 0:
        raise RecipeError(f"eval_every must be >= 0, got {script.eval_every}")
    if script.eval_every and (script.eval_file is None or not Path(script.eval_file).is_file()):
        raise RecipeError(
            f"eval_file {script.eval_file}: file not found (needed by eval_every; set 0 for none)"
        )
    if script.eval_every and script.eval_size < 1:
        raise RecipeError(f"eval_size must be >= 1, got {script.eval_size}")
    unknown = [r for r in script.rewards if r not in REWARD_NAMES]
    if unknown or not script.rewards:
        raise RecipeError(
            f"rewards: unknown {', '.join(unknown) or '(empty list)'}; "
            f"known: {', '.join(REWARD_NAMES)}"
        )
    try:
        reward_settings(script)
    except (ValueError, TypeError) as e:
        raise RecipeError(f"reward_settings: {e}") from None
    if config.reward_weights is not None and len(config.reward_weights) != len(script.rewards):
        raise RecipeError(
            f"reward_weights has {len(config.reward_weights)} values for "
            f"{len(script.rewards)} rewards ({', '.join(script.rewards)})"
        )
    checkpoint = (
        get_last_checkpoint(config.output_dir) if Path(config.output_dir).is_dir() else None
    )
    if script.resume and checkpoint is None:
        raise RecipeError(f"--resume: no checkpoint-* folder in {config.output_dir}")
    if not script.resume and checkpoint is not None:
        raise RecipeError(
            f"{config.output_dir} already has {Path(checkpoint).name}; pass --resume to continue "
            "it or choose another --output_dir"
        )
    check_resume_launch(config, script.resume)


def reward_settings(script: GSM8KArguments) -> RewardSettings:
    values = script.reward_settings or {}
    if not isinstance(values, dict):
        raise TypeError("expected a mapping")
    return RewardSettings.from_dict(values)


def resolved_settings(script: GSM8KArguments, config: Any) -> dict[str, Any]:
    """Both dataclasses as plain JSON-able dicts, for the run's config file."""
    from dataclasses import asdict

    return {"grpo_gsm8k": asdict(script), "grpo_config": config.to_dict()}
