"""Resuming a run: today's settings against the ones it was started with.

``train --resume`` continues the latest ``checkpoint-N`` of ``output_dir``. Before any model loads,
the settings are compared with ``grpo_gsm8k_config.json``, and the train file's content with its
recorded sha256 (the field ``train_data``):

- how long the run goes and how often it saves, logs and evaluates may change freely
  (:data:`FREE`: ``max_steps`` is how a run is extended);
- the model, its adapter shape and the optimizer's own settings cannot change (:data:`FIXED`):
  the checkpoint holds the weights and the optimizer state, which would keep the old values;
- any other change is refused, naming the fields, unless ``--resume_override`` names them. Then
  the run continues with them, and the change is appended to the record under ``resumes``
  (``{timestamp, checkpoint, overrides: {field: [old, new]}, ...}``): the settings the run
  started with stay as they were. ``learning_rate`` takes effect: the restored optimizer and
  scheduler are rescaled to it (:class:`.callbacks.LearningRateOverride`); a scheduler setting
  (``lr_scheduler_type``, ``warmup_steps``) takes effect from the resumed step on, as the schedule
  is rebuilt from the settings.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from ..runfiles import TRAIN_CONFIG, read_json, sha256_file

TRAIN_DATA_FIELD = "train_data"  # the sha256 of the train file

FREE = frozenset(
    {
        "resume",
        "resume_override",
        "max_steps",
        "num_train_epochs",
        "save_steps",
        "save_total_limit",
        "save_strategy",
        "logging_steps",
        "logging_dir",
        "log_level",
        "disable_tqdm",
        "report_to",
        "run_name",
        "output_dir",
        "eval_every",
        "eval_at_start",
        "eval_batch_size",
        "completions_per_step",
    }
)
FIXED = frozenset(
    {
        "model",
        "use_peft",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "lora_target_modules",
        "lora_target_parameters",
        "lora_modules_to_save",
        "lora_task_type",
        "use_rslora",
        "use_dora",
        "optim",
        "optim_args",
        "adam_beta1",
        "adam_beta2",
        "adam_epsilon",
        "weight_decay",
    }
)


def last_checkpoint(out: Path) -> Path | None:
    """The newest ``checkpoint-N`` of ``out`` that was saved whole: the trainer writes its
    ``trainer_state.json`` last, so a process killed while saving leaves a folder without one."""
    found = [
        p
        for p in out.glob("checkpoint-*")
        if p.name[len("checkpoint-") :].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return max(found, key=lambda p: int(p.name[len("checkpoint-") :]), default=None)


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Values as the record holds them (JSON, with ``str`` for what JSON cannot hold)."""
    return dict(json.loads(json.dumps(values, default=str)))


def current_settings(script: Any, config: Any) -> dict[str, Any]:
    """Every setting by field name, and the train file's sha256."""
    settings = {**_plain(asdict(script)), **_plain(config.to_dict())}
    settings[TRAIN_DATA_FIELD] = sha256_file(script.train_file)
    return settings


def recorded_settings(record: dict[str, Any]) -> dict[str, Any]:
    """The settings a run was started with, and the overrides of each resume since, applied."""
    settings = {**record.get("grpo_gsm8k", {}), **record.get("grpo_config", {})}
    train = (record.get("data") or {}).get("train") or {}
    settings[TRAIN_DATA_FIELD] = train.get("sha256")
    for resume in record.get("resumes", []):
        settings.update({k: new for k, (_, new) in resume.get("overrides", {}).items()})
    return settings


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _listed(changes: dict[str, list[Any]]) -> str:
    return ", ".join(f"{k} {_short(old)} -> {_short(new)}" for k, (old, new) in changes.items())


def resume_changes(script: Any, config: Any) -> dict[str, list[Any]]:
    """``{field: [recorded, today]}`` of the settings a resume changes, once each is allowed;
    a RecipeError naming the fields that may not change or were not named in
    ``--resume_override``."""
    path = Path(str(config.output_dir)) / TRAIN_CONFIG
    if not path.is_file():
        raise RecipeError(f"--resume: {path} not found: nothing to compare the settings with")
    before = recorded_settings(read_json(path))
    after = current_settings(script, config)
    changes = {
        name: [before.get(name), value]
        for name, value in after.items()
        if name not in FREE and before.get(name) != value
    }
    fixed = {k: v for k, v in changes.items() if k in FIXED}
    if fixed:
        raise RecipeError(
            f"--resume: {_listed(fixed)}: cannot change when resuming (the checkpoint holds the "
            "model and the optimizer state); start a new run in another --output_dir"
        )
    unasked = {k: v for k, v in changes.items() if k not in (script.resume_override or [])}
    if unasked:
        raise RecipeError(
            f"--resume: settings differ from {path}: {_listed(unasked)}; pass the recorded "
            f"values, or --resume_override {' '.join(unasked)} to continue with the new ones"
        )
    return changes


def check_override_names(names: list[str] | None, known: set[str]) -> None:
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        raise RecipeError(f"resume_override: unknown field(s) {', '.join(unknown)}")
