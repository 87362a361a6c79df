"""Training settings: our fields + TRL's ``ModelConfig`` and ``GRPOConfig``, from a YAML recipe
and the command line.

``grpo-gsm8k train --config recipes/X.yaml --learning_rate 1e-5 --max_steps 2`` — the recipe sets
defaults, the command line overrides them (TRL's ``TrlParser``). Every field of both dataclasses
is a key; an unknown key is an error. Dr GRPO is the default: ``loss_type: dr_grpo``,
``scale_rewards: none``, ``beta: 0`` (no reference model).

:class:`GSM8KArguments` extends TRL's ``ModelConfig``: its LoRA fields (``use_peft``, ``lora_r``,
``lora_alpha``, ``lora_dropout``, ``lora_target_modules`` ...) become the adapter through TRL's
``get_peft_config``; LoRA goes on every linear layer unless ``lora_target_modules`` says
otherwise. The model is named once, by ``model`` (an alias, folder or hub id):
``model_name_or_path`` is refused, and ``dtype``/``attn_implementation`` are passed to the model's
loading (``model_init_kwargs``).

Everything here is checked before a model loads: types and ranges (:mod:`.validate`), files,
batch arithmetic, and a resume's settings against the run's record (:mod:`.resume`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import GRPOConfig, ModelConfig

from ..errors import OptionsError, RecipeError
from ..options import field_names, parse_options, read_config_file
from ..prompts import PROMPT_STYLES
from ..rewards import DEFAULT_REWARDS, REWARD_NAMES, RewardSettings
from .resume import TRAIN_DATA_FIELD, check_override_names, last_checkpoint, resume_changes
from .validate import check_ranges, check_recipe_types, check_reward_settings

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
class GSM8KArguments(ModelConfig):
    """grpo-gsm8k's own training settings and TRL's model/LoRA ones (TRL's GRPOConfig holds the
    trainer's)."""

    # ModelConfig's fields whose meaning differs here
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "not used: name the model with --model"}
    )
    model_revision: str = field(
        default="main", metadata={"help": "not supported: name a folder holding that revision"}
    )
    dtype: str | None = field(
        default=None,
        metadata={
            "help": "dtype the model loads in (None: model_init_kwargs' dtype, else float32)",
            "choices": ["auto", "bfloat16", "float16", "float32"],
        },
    )
    lora_target_modules: list[str] | None = field(
        default_factory=lambda: ["all-linear"],
        metadata={"help": "LoRA target modules (all-linear: every linear layer)"},
    )

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
            "help": "prompt template, the same as eval's --prompt: chat, raw, seed or auto (chat "
            "when the tokenizer has a chat template)",
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
    resume_override: list[str] | None = field(
        default=None,
        metadata={
            "help": "with --resume: fields whose new value is accepted (others must match the "
            "run's record; the change is appended to it). learning_rate takes effect (the "
            "restored optimizer and schedule are rescaled to it); train_data names a changed "
            "train file's content"
        },
    )
    prompts_per_step: int | None = field(
        default=None,
        metadata={
            "help": "expected prompts per optimizer step: per_device_train_batch_size x processes "
            "x gradient_accumulation_steps must equal it x num_generations (None: not checked)"
        },
    )
    dynamic_sampling_rounds: int = field(
        default=0,
        metadata={
            "help": "dynamic sampling (DAPO): drop prompt groups whose rewards are all equal and "
            "refill the batch with new prompts, in at most N extra generation rounds (0: off)"
        },
    )

    def __post_init__(self) -> None:
        from .distributed import check_environment

        check_environment()  # before GRPOConfig (parsed next) builds a DeepSpeed plugin
        super().__post_init__()
        if isinstance(self.rewards, str):  # `rewards: accuracy` is one name
            self.rewards = [self.rewards]
        if isinstance(self.reward_settings, str):
            try:
                self.reward_settings = json.loads(self.reward_settings)
            except json.JSONDecodeError as e:
                raise RecipeError(f"reward_settings: not JSON ({e.msg})") from None
        check_ranges(self)
        check_reward_settings(self.reward_settings, RewardSettings)
        check_model_fields(self)


@dataclass
class GRPOSettings(GRPOConfig):
    """TRL's GRPOConfig, its values' ranges checked before its own ``__post_init__`` (which
    divides by some of them)."""

    def __post_init__(self) -> None:
        check_ranges(self)
        super().__post_init__()


def option_types() -> list[Any]:
    return [GSM8KArguments, GRPOSettings]


def parse_train_args(argv: list[str]) -> tuple[GSM8KArguments, Any]:
    """``(GSM8KArguments, GRPOConfig)`` from ``[--config FILE] [--field value ...]``, checked,
    with ``dtype``/``attn_implementation`` moved into ``model_init_kwargs``."""
    prog = "grpo-gsm8k train"
    try:
        if "--config" in argv[:-1]:
            path = argv[argv.index("--config") + 1]
            values = read_config_file(path, option_types(), prog)
            check_recipe_types(path, values, option_types())
        script, config = parse_options(option_types(), argv, prog, defaults=train_defaults())
    except OptionsError as e:
        raise RecipeError(str(e)) from None
    check(script, config)
    config.model_init_kwargs = model_init_kwargs(script, config)
    return script, config


def check_model_fields(script: GSM8KArguments) -> None:
    """ModelConfig's fields that name or load the model another way than ``model``."""
    if script.model_name_or_path is not None:
        raise RecipeError(
            f"model_name_or_path {script.model_name_or_path!r}: name the model with `model` "
            "(an alias, a local folder or a hub id)"
        )
    if script.model_revision != "main":
        raise RecipeError(
            f"model_revision {script.model_revision!r}: not supported; download that revision "
            "to a folder and name the folder in `model`"
        )
    if script.load_in_4bit or script.load_in_8bit:
        raise RecipeError("load_in_4bit/load_in_8bit: quantized training is not supported here")


def model_init_kwargs(script: GSM8KArguments, config: Any) -> dict[str, Any] | None:
    """GRPOConfig's ``model_init_kwargs`` with ModelConfig's ``dtype`` and
    ``attn_implementation`` in it; a RecipeError when both name different values."""
    kwargs = config.model_init_kwargs
    if isinstance(kwargs, str):
        try:
            kwargs = json.loads(kwargs)
        except json.JSONDecodeError as e:
            raise RecipeError(f"model_init_kwargs: not JSON ({e.msg})") from None
    if kwargs is not None and not isinstance(kwargs, dict):
        raise RecipeError(f"model_init_kwargs: expected a mapping, got {kwargs!r}")
    merged = dict(kwargs or {})
    for name in ("dtype", "attn_implementation"):
        value = getattr(script, name)
        if value is None:
            continue
        if merged.get(name, value) != value:
            raise RecipeError(
                f"{name} {value!r} and model_init_kwargs' {name} {merged[name]!r} disagree; "
                "set one of them"
            )
        merged[name] = value
    return merged or kwargs


def peft_config(script: GSM8KArguments) -> Any:
    """The LoRA adapter of the run (TRL's ``get_peft_config``), or None."""
    from trl import get_peft_config

    return get_peft_config(script)


def check(script: GSM8KArguments, config: Any) -> None:
    """Settings that would otherwise fail only after the model has loaded."""
    from . import dynamic_sampling
    from .distributed import check_launch

    check_launch(config, script.prompts_per_step)
    dynamic_sampling.check(script.dynamic_sampling_rounds, config)
    check_settings(script, config)
    check_files(script, config)
    check_run_folder(script, config)


def check_settings(script: GSM8KArguments, config: Any) -> None:
    if script.prompt_style not in PROMPT_STYLES:
        raise RecipeError(
            f"prompt_style must be one of {', '.join(PROMPT_STYLES)}, got {script.prompt_style!r}"
        )
    if config.max_steps == 0 or config.max_steps < -1:
        raise RecipeError(
            f"max_steps must be a positive number of steps (or -1: num_train_epochs decides), "
            f"got {config.max_steps}"
        )
    if script.eval_every < 0:
        raise RecipeError(f"eval_every must be >= 0, got {script.eval_every}")
    if script.eval_every and script.eval_size < 1:
        raise RecipeError(f"eval_size must be >= 1, got {script.eval_size}")
    unknown = [r for r in script.rewards if r not in REWARD_NAMES]
    if unknown or not script.rewards:
        raise RecipeError(
            f"rewards: unknown {', '.join(unknown) or '(empty list)'}; "
            f"known: {', '.join(REWARD_NAMES)}"
        )
    try:
        settings = reward_settings(script)
    except (ValueError, TypeError) as e:
        raise RecipeError(f"reward_settings: {e}") from None
    cache, limit = settings.overlong_cache, config.max_completion_length
    if "overlong" in script.rewards and not 0 <= cache < limit:
        raise RecipeError(
            f"reward_settings: overlong_cache must be >= 0 and below max_completion_length "
            f"({limit}), got {cache}"
        )
    if config.reward_weights is not None and len(config.reward_weights) != len(script.rewards):
        raise RecipeError(
            f"reward_weights has {len(config.reward_weights)} values for "
            f"{len(script.rewards)} rewards ({', '.join(script.rewards)})"
        )
    model_init_kwargs(script, config)
    known = field_names(option_types()) | {TRAIN_DATA_FIELD}
    check_override_names(script.resume_override, known)


def check_files(script: GSM8KArguments, config: Any) -> None:
    """The data files exist, and the train file fills at least one step."""
    from ..data import load_prepared

    if not Path(script.train_file).is_file():
        raise RecipeError(f"train_file {script.train_file}: file not found")
    if script.eval_every and (script.eval_file is None or not Path(script.eval_file).is_file()):
        raise RecipeError(
            f"eval_file {script.eval_file}: file not found (needed by eval_every; set 0 for none)"
        )
    if Path(str(config.output_dir)).exists() and not Path(str(config.output_dir)).is_dir():
        raise RecipeError(f"output_dir {config.output_dir}: exists and is not a folder")
    rows = len(load_prepared(script.train_file))
    needed = config.generation_batch_size // config.num_generations  # prompts per generation
    if rows < needed:
        raise RecipeError(
            f"train_file {script.train_file}: {rows} row(s), but one step needs {needed} "
            f"prompts (generation_batch_size {config.generation_batch_size} / num_generations "
            f"{config.num_generations}); give at least {needed} rows"
        )


def check_run_folder(script: GSM8KArguments, config: Any) -> None:
    """A checkpoint in output_dir only with --resume, and then the same settings as the run's
    record (or the changes named in --resume_override), on the same launch."""
    from transformers.trainer_utils import get_last_checkpoint

    from .distributed import check_resume_launch

    out = Path(str(config.output_dir))
    checkpoint = get_last_checkpoint(str(out)) if out.is_dir() else None
    if script.resume and (checkpoint is None or last_checkpoint(out) is None):
        raise RecipeError(
            f"--resume: no checkpoint-* folder with a trainer_state.json in {config.output_dir}"
        )
    if not script.resume and checkpoint is not None:
        raise RecipeError(
            f"{config.output_dir} already has {Path(checkpoint).name}; pass --resume to continue "
            "it or choose another --output_dir"
        )
    check_resume_launch(config, script.resume)  # the launch first: a new one cannot resume at all
    if script.resume:
        resume_changes(script, config)


def reward_settings(script: GSM8KArguments) -> RewardSettings:
    values = script.reward_settings or {}
    if not isinstance(values, dict):
        raise TypeError("expected a mapping")
    return RewardSettings.from_dict(values)


def resolved_settings(script: GSM8KArguments, config: Any) -> dict[str, Any]:
    """Both dataclasses as plain JSON-able dicts, for the run's config file."""
    from dataclasses import asdict

    return {"grpo_gsm8k": asdict(script), "grpo_config": config.to_dict()}
