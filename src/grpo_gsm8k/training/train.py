"""``grpo-gsm8k train``: Dr GRPO on GSM8K with TRL's ``GRPOTrainer``.

What the output dir holds when a run ends:

- the final model + tokenizer (a checkpoint ``eval`` loads; for a LoRA run the adapter, and the
  merged model in ``merged/``), ``checkpoint-N/`` every ``save_steps`` (``--resume`` continues
  from the latest, at the same step and data order);
- ``grpo_gsm8k_config.json``: every setting (ours and GRPOConfig's), model path, data sha256,
  package versions;
- ``metrics.jsonl``: one line per log event (TRL's training metrics and ``eval/*``, the greedy
  in-training eval on held-out questions), for plotting offline;
- ``completions.jsonl``: a few sampled completions per step with their rewards.

Prompts are rendered to text with :func:`grpo_gsm8k.prompts.render_prompt`, the template ``eval``
uses, so training and eval see the same tokens; the config record carries the template's identity
(``prompt_template``) as eval's summary does.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from ..data import load_prepared
from ..errors import RecipeError
from ..generation import SamplingSettings
from ..generation.hf import generate
from ..grading import score
from ..hardware import choose_training
from ..models import resolve_model
from ..prompts import (
    PromptStyle,
    prompt_ids,
    prompt_template,
    render_prompt,
    resolve_prompt_style,
    text_for_special_tokens,
)
from ..rewards import RewardFunc, completion_text, make_reward_funcs
from ..runfiles import (
    append_jsonl,
    check_output_dir,
    fingerprint,
    output_dir,
    provenance,
    read_json,
    read_jsonl,
    write_json,
    write_jsonl,
)
from .distributed import SaveOnSignal, launch_record
from .recipe import GSM8KArguments, check, resolved_settings
from .recipe import reward_settings as make_reward_settings

CONFIG_FILE = "grpo_gsm8k_config.json"
METRICS_FILE = "metrics.jsonl"
COMPLETIONS_FILE = "completions.jsonl"


def train(script: GSM8KArguments, config: GRPOConfig) -> Path:
    """Train with the settings of a recipe + overrides; return the output dir."""
    check(script, config)  # every check that needs no model happens here
    out = Path(str(config.output_dir))
    main_process = config.process_index == 0  # the only rank that writes files (see launch/)
    check_output_dir(out)
    resolved = resolve_model(script.model, config.trust_remote_code)

    from datasets import Dataset
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
    dataset = Dataset.from_list(
        [{"prompt": trl_prompt(e.question, tokenizer, style), "gold": e.gold} for e in train_rows]
    )

    output_dir(out)
    checkpoint = None
    if not script.resume and main_process:  # logs of a run that died before its first checkpoint
        for name in (METRICS_FILE, COMPLETIONS_FILE):
            if (out / name).is_file():
                print(f"note: {out / name} is from a run with no checkpoint; starting it afresh")
                (out / name).unlink()
    if script.resume:
        from transformers.trainer_utils import get_last_checkpoint

        checkpoint = get_last_checkpoint(str(out))
        step = read_json(Path(checkpoint) / "trainer_state.json")["global_step"]
        for name in (METRICS_FILE, COMPLETIONS_FILE):  # drop what was logged after the checkpoint
            if main_process:
                _truncate_jsonl(out / name, step)
    hardware = choose_training()
    used = {k: getattr(config, k) for k in ("bf16", "use_vllm", "vllm_mode")}
    if main_process:
        print(f"hardware: {hardware.reason}; training with {_describe(used)}")
    record = {
        **resolved_settings(script, config),
        "hardware": {"chosen": hardware.settings, "reason": hardware.reason, "used": used},
        "model": {"name": resolved.name, "path": resolved.path, "source": resolved.source},
        "resumed_from": checkpoint,
        "launch": launch_record(config),
        **provenance(
            data={
                "train": fingerprint(script.train_file),
                "eval": fingerprint(script.eval_file) if script.eval_file and eval_rows else None,
            },
            prompt_template=prompt_template(style, tokenizer),
        ),
    }
    if main_process:
        write_json(out / CONFIG_FILE, record)

    rewards = make_reward_funcs(script.rewards, make_reward_settings(script))
    completions_log = CompletionLog(
        out / COMPLETIONS_FILE,
        script.completions_per_step,
        config.process_index,
        config.world_size,
    )
    trainer = GSM8KGRPOTrainer(
        model=resolved.path,
        reward_funcs=completions_log.wrap(rewards),
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(script),
        callbacks=[MetricsFile(out / METRICS_FILE), SaveOnSignal()],
    )
    if main_process:  # what accelerate made of the launch (FSDP/DeepSpeed show only here)
        record["launch"]["accelerator"] = {
            "distributed_type": str(trainer.accelerator.distributed_type).split(".")[-1],
            "mixed_precision": trainer.accelerator.mixed_precision,
            "num_processes": trainer.accelerator.num_processes,
        }
        write_json(out / CONFIG_FILE, record)
    if eval_rows:
        prompts = [render_prompt(e.question, tokenizer, style) for e in eval_rows]
        max_new = int(script.eval_max_new_tokens or config.max_completion_length or 256)
        trainer.add_callback(
            HeldOutEval(
                trainer,
                prompts,
                [e.gold for e in eval_rows],
                script.eval_every,
                script.eval_at_start,
                max_new,
                script.eval_batch_size,
            )
        )
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(out))
    if script.use_peft and trainer.accelerator.is_main_process:
        from ..models import merge_adapter

        merge_adapter(str(out), str(out / "merged"), config.trust_remote_code)
    return out


def _describe(used: dict[str, Any]) -> str:
    generation = f"vLLM ({used['vllm_mode']})" if used["use_vllm"] else "transformers"
    return f"{'bf16' if used['bf16'] else 'fp32'}, {generation} generation"


def trl_prompt(question: str, tokenizer: Any, style: PromptStyle) -> str:
    """The prompt column: eval's rendered text, in the form TRL tokenizes to eval's token ids."""
    return text_for_special_tokens(tokenizer, render_prompt(question, tokenizer, style))


def lora_config(script: GSM8KArguments) -> Any:
    if not script.use_peft:
        return None
    from peft import LoraConfig

    return LoraConfig(
        task_type="CAUSAL_LM",
        r=script.lora_r,
        lora_alpha=script.lora_alpha,
        lora_dropout=script.lora_dropout,
        target_modules=script.lora_target_modules or "all-linear",
        bias="none",
    )


def _truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop the log rows written after ``last_step`` (and a torn last line)."""
    if not path.is_file():
        return
    rows = [row for _, row in read_jsonl(path, torn_tail="drop")]
    write_jsonl(path, [row for row in rows if (row.get("step") or 0) <= last_step])


# ------------------------------------------------------------------------- trainer and callbacks


class GSM8KGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose next log event also carries ``extra_logs`` (the in-training eval). On
    CPU its colocated vLLM engine is :class:`.vllm_sync.CPUVLLMGeneration` and its LM head
    scores only completion tokens (:mod:`.cpu_logprobs`)."""

    extra_logs: dict[str, float] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from .cpu_logprobs import score_completion_tokens_only_on_cpu
        from .vllm_sync import cpu_colocate, cpu_engine

        score_completion_tokens_only_on_cpu()
        config = kwargs["args"]
        with cpu_engine(config) if cpu_colocate(config) else contextlib.nullcontext():
            super().__init__(*args, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.extra_logs:
            logs = {**logs, **self.extra_logs}
            self.extra_logs = None
        super().log(logs, start_time)


class MetricsFile(TrainerCallback):
    """Appends every log event to ``metrics.jsonl`` as one JSON line with its step."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
        if state.is_world_process_zero and logs:
            append_jsonl(self.path, [{"step": state.global_step, "epoch": state.epoch, **logs}])


class HeldOutEval(TrainerCallback):
    """Greedy accuracy (strict, flexible) and format rate on held-out questions every ``every``
    steps (and at the start and the end) on the live model, logged as ``eval/*``."""

    def __init__(
        self,
        trainer: GSM8KGRPOTrainer,
        prompts: list[str],
        golds: list[str],
        every: int,
        at_start: bool,
        max_new_tokens: int,
        batch_size: int,
    ) -> None:
        self.trainer = trainer
        self.prompts = prompts
        self.golds = golds
        self.every = every
        self.at_start = at_start
        self.sampling = SamplingSettings(max_new_tokens=max_new_tokens)
        self.batch_size = batch_size

    def evaluate(self) -> dict[str, float]:
        import torch

        from .vllm_sync import CPUVLLMGeneration

        trainer = self.trainer
        engine = getattr(trainer, "vllm_generation", None) if trainer.use_vllm else None
        cuda = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=cuda):  # generate() seeds; keep training's RNG as is
            if isinstance(engine, CPUVLLMGeneration):  # the colocated engine, synced first
                if trainer._last_loaded_step != trainer.state.global_step:
                    engine.sync_weights()
                    trainer._last_loaded_step = trainer.state.global_step
                tokenizer = trainer.processing_class
                ids = [prompt_ids(tokenizer, p) for p in self.prompts]
                results = [[c] for c in engine.greedy(ids, self.sampling.max_new_tokens)]
            else:
                results = generate(
                    trainer.accelerator.unwrap_model(trainer.model),
                    trainer.processing_class,
                    self.prompts,
                    self.sampling,
                    self.batch_size,
                    progress=False,
                )
        texts = [group[0].text for group in results]
        metrics = {f"eval/{k}": v for k, v in score(texts, self.golds).items()}
        metrics["eval/mean_tokens"] = sum(g[0].tokens for g in results) / len(results)
        metrics["eval/truncated_rate"] = sum(g[0].truncated for g in results) / len(results)
        return metrics

    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if self.at_start and state.global_step == 0:
            self.trainer.log(self.evaluate())

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> Any:
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self.trainer.extra_logs = self.evaluate()
            control.should_log = True
        return control


class CompletionLog:
    """Wraps the reward functions: the last one of each call appends a few completions with
    every reward's value (and which keyword arguments TRL passed) to ``completions.jsonl``.

    Under several processes every rank scores its own completions: each contributes its first
    ``ceil(per_step / world_size)`` rows (tagged with ``rank``), gathered to the main process,
    which alone writes the first ``per_step`` of them."""

    def __init__(self, path: Path, per_step: int, rank: int = 0, world_size: int = 1) -> None:
        self.path = path
        self.per_step = per_step
        self.rank = rank
        self.world_size = world_size
        self.enabled = per_step > 0  # the same on every rank: gathering is collective
        self.values: dict[str, list[float]] = {}

    def wrap(self, funcs: list[RewardFunc]) -> list[RewardFunc]:
        return [self._wrap(f, last=i == len(funcs) - 1) for i, f in enumerate(funcs)]

    def _wrap(self, func: RewardFunc, last: bool) -> RewardFunc:
        @functools.wraps(func)
        def wrapped(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
            values = func(prompts, completions, **kwargs)
            self.values[func.__name__] = values
            if last and self.enabled:
                self._write(completions, kwargs)
            return values

        return wrapped

    def _write(self, completions: list[Any], kwargs: dict[str, Any]) -> None:
        state = kwargs.get("trainer_state")
        step = state.global_step + 1 if state is not None else None
        ids = kwargs.get("completion_ids")
        golds = kwargs.get("gold")
        rows = []
        per_rank = -(-self.per_step // self.world_size)
        for i in range(min(per_rank, len(completions))):
            rows.append(
                {
                    "step": step,
                    "rank": self.rank,
                    "gold": golds[i] if golds else None,
                    "completion": completion_text(completions[i]),
                    "tokens": len(ids[i]) if ids else None,
                    "rewards": {name: v[i] for name, v in self.values.items()},
                    "reward_kwargs": sorted(kwargs),
                }
            )
        if self.world_size > 1:
            from accelerate.utils import gather_object

            rows = gather_object(rows)[: self.per_step]
        if self.rank == 0:
            append_jsonl(self.path, rows)
