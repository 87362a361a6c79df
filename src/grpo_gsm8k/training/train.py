"""``grpo-gsm8k train``: Dr GRPO on GSM8K with TRL's ``GRPOTrainer``.

What the output dir holds when a run ends:

- the final model + tokenizer (a checkpoint ``eval`` loads; for a LoRA run the adapter, and the
  merged model in ``merged/``), ``checkpoint-N/`` every ``save_steps`` (``--resume`` continues
  from the latest, at the same step and data order);
- ``grpo_gsm8k_config.json``: every setting (ours and GRPOConfig's), model path, data sha256,
  package versions; each ``--resume`` appends an entry to its ``resumes`` (what changed, from which
  checkpoint), the settings the run started with staying as they were (see :mod:`.resume`);
- ``metrics.jsonl``: one line per log event (TRL's training metrics and ``eval/*``, the greedy
  in-training eval on held-out questions), for plotting offline;
- ``completions.jsonl``: a few sampled completions per step with their rewards.

Prompts are rendered to text with :func:`grpo_gsm8k.prompts.render_prompt`, the template ``eval``
uses, so training and eval see the same tokens; the config record carries the template's identity
(``prompt_template``) as eval's summary does.

A run that trained no step fails (exit 2) and saves no final model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trl import GRPOConfig

from ..data import Example, load_prepared
from ..errors import RecipeError
from ..hardware import choose_training
from ..models import ResolvedModel, resolve_model
from ..prompts import (
    PromptStyle,
    prompt_template,
    render_prompt,
    resolve_prompt_style,
    text_for_special_tokens,
)
from ..rewards import make_reward_funcs
from ..runfiles import (
    COMPLETIONS,
    METRICS,
    TRAIN_CONFIG,
    check_output_dir,
    fingerprint,
    output_dir,
    provenance,
    read_json,
    read_jsonl,
    write_json,
    write_jsonl,
)
from . import dynamic_sampling
from .callbacks import (
    CompletionLog,
    GSM8KGRPOTrainer,
    HeldOutEval,
    LearningRateOverride,
    MetricsFile,
)
from .distributed import SaveOnSignal, launch_record
from .recipe import GSM8KArguments, check, peft_config, resolved_settings
from .recipe import reward_settings as make_reward_settings
from .resume import last_checkpoint, resume_changes
from .vllm_sync import precision_record


@dataclass
class TrainData:
    """What the trainer is given: the tokenizer, the prompt style, both sets of questions."""

    tokenizer: Any
    style: PromptStyle
    train_rows: list[Example]
    eval_rows: list[Example]


def run(script: GSM8KArguments, config: GRPOConfig) -> Path:
    """Train with the settings of a recipe + overrides; return the output dir."""
    check(script, config)  # every check that needs no model happens here
    changes = resume_changes(script, config) if script.resume else {}
    out = Path(str(config.output_dir))
    main_process = config.process_index == 0  # the only rank that writes files (see launch/)
    check_output_dir(out)
    resolved = resolve_model(script.model, config.trust_remote_code)
    data = load_data(script, config, resolved)

    output_dir(out)
    checkpoint = start_logs(out, script.resume, main_process)
    record = run_record(script, config, resolved, data, checkpoint, changes)
    if main_process:
        write_json(out / TRAIN_CONFIG, record)
    trainer = build_trainer(script, config, resolved, data)
    dynamic_sampling.enable(trainer, script.dynamic_sampling_rounds)
    if main_process:  # what accelerate made of the launch (FSDP/DeepSpeed show only here)
        launch = record["resumes"][-1]["launch"] if checkpoint else record["launch"]
        launch["accelerator"] = {
            "distributed_type": str(trainer.accelerator.distributed_type).split(".")[-1],
            "mixed_precision": trainer.accelerator.mixed_precision,
            "num_processes": trainer.accelerator.num_processes,
        }
        # generation_dtype, learner_dtype: what the sampler and the learner compute in
        (record["resumes"][-1] if checkpoint else record).update(precision_record(trainer))
        write_json(out / TRAIN_CONFIG, record)
    if checkpoint:  # the restored optimizer keeps the rate it was saved with; a no-op if equal
        trainer.add_callback(LearningRateOverride(config.learning_rate))
    trainer.train(resume_from_checkpoint=checkpoint)
    if trainer.state.global_step == 0:
        raise RecipeError(
            f"training ran 0 steps (train_file {script.train_file}, max_steps "
            f"{config.max_steps}); no final model saved in {out}"
        )
    trainer.save_model(str(out))
    if script.use_peft and trainer.accelerator.is_main_process:
        from ..models import merge_adapter

        merge_adapter(str(out), str(out / "merged"), config.trust_remote_code)
    if main_process:
        print(f"wrote {out} (model, checkpoints, {METRICS}, {TRAIN_CONFIG})")
    return out


def load_data(script: GSM8KArguments, config: GRPOConfig, resolved: ResolvedModel) -> TrainData:
    """The tokenizer and the questions; a RecipeError when the eval questions are also trained
    on."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        resolved.path, trust_remote_code=config.trust_remote_code
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    train_rows = load_prepared(script.train_file)
    eval_rows = []
    if script.eval_every and script.eval_file:
        eval_rows = load_prepared(script.eval_file)[: script.eval_size]
    overlap = {e.question for e in train_rows} & {e.question for e in eval_rows}
    if overlap:
        raise RecipeError(
            f"eval_file {script.eval_file}: {len(overlap)} of the first {script.eval_size} "
            f"questions are also in train_file {script.train_file}"
        )
    style = resolve_prompt_style(script.prompt_style, tokenizer)
    return TrainData(tokenizer, style, train_rows, eval_rows)


def start_logs(out: Path, resume: bool, main_process: bool) -> str | None:
    """The checkpoint to resume from (None: a fresh run), the logs made to match it: a fresh
    run drops the logs of a run that died before its first checkpoint, a resumed one the rows
    logged after its checkpoint."""
    if not resume:
        for name in (METRICS, COMPLETIONS):
            if main_process and (out / name).is_file():
                print(f"note: {out / name} is from a run with no checkpoint; starting it afresh")
                (out / name).unlink()
        return None
    checkpoint = last_checkpoint(out)  # checked: there is one
    step = read_json(Path(str(checkpoint)) / "trainer_state.json")["global_step"]
    for name in (METRICS, COMPLETIONS):
        if main_process:
            _truncate_jsonl(out / name, step)
    return str(checkpoint)


def run_record(
    script: GSM8KArguments,
    config: GRPOConfig,
    resolved: ResolvedModel,
    data: TrainData,
    checkpoint: str | None,
    changes: dict[str, list[Any]],
) -> dict[str, Any]:
    """``grpo_gsm8k_config.json``: a fresh run's settings and facts; for a resumed run the
    record it started with, one entry (its facts and what changed) appended to ``resumes``."""
    hardware = choose_training()
    used = {k: getattr(config, k) for k in ("bf16", "use_vllm", "vllm_mode")}
    if config.process_index == 0:
        print(f"hardware: {hardware.reason}; training with {_describe(used)}")
    eval_file = script.eval_file if data.eval_rows else None
    facts = {
        "hardware": {"chosen": hardware.settings, "reason": hardware.reason, "used": used},
        "model": {"name": resolved.name, "path": resolved.path, "source": resolved.source},
        "launch": launch_record(config),
        **provenance(
            data={
                "train": fingerprint(script.train_file),
                "eval": fingerprint(eval_file) if eval_file else None,
            },
            prompt_template=prompt_template(data.style, data.tokenizer),
        ),
    }
    if checkpoint is None:
        return {**resolved_settings(script, config), **facts}
    record = read_json(Path(str(config.output_dir)) / TRAIN_CONFIG)
    entry = {"checkpoint": checkpoint, "overrides": changes, **facts}
    record["resumes"] = [*record.get("resumes", []), entry]
    return record


def build_trainer(
    script: GSM8KArguments, config: GRPOConfig, resolved: ResolvedModel, data: TrainData
) -> GSM8KGRPOTrainer:
    """The trainer with its reward functions, log files and in-training eval."""
    from datasets import Dataset

    out = Path(str(config.output_dir))
    tokenizer, style = data.tokenizer, data.style
    dataset = Dataset.from_list(
        [
            {"prompt": trl_prompt(e.question, tokenizer, style), "gold": e.gold}
            for e in data.train_rows
        ]
    )
    rewards = make_reward_funcs(
        script.rewards, make_reward_settings(script), config.max_completion_length or 0
    )
    completions_log = CompletionLog(
        out / COMPLETIONS, script.completions_per_step, config.process_index, config.world_size
    )
    trainer = GSM8KGRPOTrainer(
        model=resolved.path,
        reward_funcs=completions_log.wrap(rewards),
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config(script),
        callbacks=[MetricsFile(out / METRICS), SaveOnSignal()],
    )
    if data.eval_rows:
        prompts = [render_prompt(e.question, tokenizer, style) for e in data.eval_rows]
        max_new = int(script.eval_max_new_tokens or config.max_completion_length or 256)
        trainer.add_callback(
            HeldOutEval(
                trainer,
                prompts,
                [e.gold for e in data.eval_rows],
                script.eval_every,
                script.eval_at_start,
                max_new,
                script.eval_batch_size,
            )
        )
    return trainer


def _describe(used: dict[str, Any]) -> str:
    generation = f"vLLM ({used['vllm_mode']})" if used["use_vllm"] else "transformers"
    return f"{'bf16' if used['bf16'] else 'fp32'}, {generation} generation"


def trl_prompt(question: str, tokenizer: Any, style: PromptStyle) -> str:
    """The prompt column: eval's rendered text, in the form TRL tokenizes to eval's token ids."""
    return text_for_special_tokens(tokenizer, render_prompt(question, tokenizer, style))


def _truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop the log rows written after ``last_step`` (and a torn last line)."""
    if not path.is_file():
        return
    rows = [row for _, row in read_jsonl(path, torn_tail="drop")]
    write_jsonl(path, [row for row in rows if (row.get("step") or 0) <= last_step])
