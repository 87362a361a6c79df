"""Training settings: our fields + TRL's ``GRPOConfig``, from a YAML recipe and the command line.

``grpo-gsm8k train --config recipes/X.yaml --learning_rate 1e-5 --max_steps 2`` — the recipe sets
defaults, the command line overrides them (TRL's ``TrlParser``). Every field of both dataclasses
is a key; an unknown key is an error. Dr GRPO is the default: ``loss_type: dr_grpo``,
``scale_rewards: none``, ``beta: 0`` (no reference model).

Everything here is checked before a model loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .rewards import REWARD_NAMES, RewardSettings

# What differs from GRPOConfig's own defaults when a recipe does not say otherwise.
DR_GRPO_DEFAULTS: dict[str, Any] = {
    "loss_type": "dr_grpo",
    "scale_rewards": "none",
    "beta": 0.0,
    "report_to": "none",
    "logging_steps": 1,
    "output_dir": "runs/grpo",
}


class RecipeError(ValueError):
    """A bad recipe or command-line setting; the message is one line."""


@dataclass
class ScriptArguments:
    """grpo-gsm8k's own settings (GRPOConfig holds the trainer's)."""

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
        metadata={"help": "prompt template, the same as eval's", "choices": ["chat", "raw"]},
    )
    rewards: list[str] = field(
        default_factory=lambda: list(REWARD_NAMES),
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
        if isinstance(self.reward_settings, str):
            try:
                self.reward_settings = json.loads(self.reward_settings)
            except json.JSONDecodeError as e:
                raise RecipeError(f"reward_settings: not JSON ({e.msg})") from None


def _parser() -> Any:
    from trl import GRPOConfig, TrlParser

    class Parser(TrlParser):
        def error(self, message: str) -> Any:  # argparse would print usage and exit
            raise RecipeError(message)

    return Parser([ScriptArguments, GRPOConfig], prog="grpo-gsm8k train")  # type: ignore[list-item]


def known_keys() -> set[str]:
    from trl import GRPOConfig

    return {f.name for f in fields(ScriptArguments)} | {f.name for f in fields(GRPOConfig)}


def read_recipe(path: str) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise RecipeError(f"{path}: recipe not found")
    try:
        recipe = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(recipe, dict):
        raise RecipeError(f"{path}: expected a mapping of settings")
    unknown = sorted(set(recipe) - known_keys())
    if unknown:
        raise RecipeError(
            f"{path}: unknown key(s) {', '.join(map(repr, unknown))} (not a grpo-gsm8k setting or "
            "GRPOConfig field; see `grpo-gsm8k train --help`)"
        )
    return recipe


def parse_train_args(argv: list[str]) -> tuple[ScriptArguments, Any]:
    """``(ScriptArguments, GRPOConfig)`` from ``[--config FILE] [--field value ...]``."""
    from .distributed import check_environment

    check_environment()
    args = list(argv)
    recipe: dict[str, Any] = {}
    if "--config" in args:
        i = args.index("--config")
        if i + 1 >= len(args):
            raise RecipeError("--config needs a YAML file")
        recipe = read_recipe(args[i + 1])
        del args[i : i + 2]
    parser = _parser()
    parser.set_defaults_with_config(**{**DR_GRPO_DEFAULTS, **recipe})
    try:
        script, config, rest = parser.parse_args_into_dataclasses(
            args=args, return_remaining_strings=True
        )
    except RecipeError:
        raise
    except ValueError as e:  # GRPOConfig.__post_init__, e.g. num_generations vs the batch
        raise RecipeError(" ".join(str(e).split())) from None
    if rest:
        raise RecipeError(f"unknown argument(s) {' '.join(rest)}; see `grpo-gsm8k train --help`")
    check(script, config)
    return script, config


def check(script: ScriptArguments, config: Any) -> None:
    """Settings that would otherwise fail only after the model has loaded."""
    from transformers.trainer_utils import get_last_checkpoint

    from .distributed import check_launch

    check_launch(config, script.prompts_per_step)
    if not Path(script.train_file).is_file():
        raise RecipeError(f"train_file {script.train_file}: file not found")
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


def reward_settings(script: ScriptArguments) -> RewardSettings:
    values = script.reward_settings or {}
    if not isinstance(values, dict):
        raise TypeError("expected a mapping")
    return RewardSettings.from_dict(values)


def resolved_settings(script: ScriptArguments, config: Any) -> dict[str, Any]:
    """Both dataclasses as plain JSON-able dicts, for the run's config file."""
    from dataclasses import asdict

    return {"grpo_gsm8k": asdict(script), "grpo_config": config.to_dict()}
