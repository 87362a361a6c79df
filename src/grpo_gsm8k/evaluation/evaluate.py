"""``grpo-gsm8k eval``: generate answers to GSM8K questions, grade them, write samples + summary;
``grpo-gsm8k grade``: re-grade saved generations from any tool.

:class:`EvalConfig` is every option of ``eval`` (the CLI is generated from it); :func:`run`
is the command: the run's setup (model, tokenizer, prompt, hardware choice; together its
identity), opening the run folder (:mod:`.run_folder`: start, resume or refuse, before the model
loads), generating the missing rows chunk by chunk (appended to ``samples.jsonl``), and the
summary (:mod:`.summary`). Grading itself is :mod:`grpo_gsm8k.grading`'s.

A full disk stops the run with one line saying how many questions are kept in ``samples.jsonl``;
rerunning the same command resumes from there.
"""

from __future__ import annotations

import errno
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

from ..data import Example, load_prepared
from ..errors import UserError
from ..generation import Backend, SamplingSettings
from ..grading import score_completions
from ..hardware import BACKENDS, DTYPES, HardwareChoice, choose
from ..options import MODEL_HELP, DecodingOptions, ModelOptions
from ..prompts import (
    PROMPT_STYLES,
    PromptStyle,
    prompt_template,
    render_prompt,
    resolve_prompt_style,
)
from ..runfiles import (
    SAMPLES,
    SUMMARY,
    append_jsonl,
    check_output_dir,
    fingerprint,
    write_json,
)
from .run_folder import EvalError, RunFolder, model_sha256, open_run
from .summary import EvalSummary, build_summary, print_summary

__all__ = ["EvalConfig", "EvalError", "run"]

# ------------------------------------------------------------------------------------ settings


@dataclass(kw_only=True)
class EvalConfig(DecodingOptions, ModelOptions):
    """Options of ``grpo-gsm8k eval`` (each is also a ``--flag``; ``--config FILE.yaml`` sets them).

    Greedy decoding unless ``samples`` is set. An interrupted run resumes from ``samples.jsonl``
    in the same ``out`` folder; a folder holding a run with other settings is refused."""

    positional: ClassVar[tuple[str, ...]] = ("model",)

    model: str = field(metadata={"help": MODEL_HELP})
    data: str = field(
        default="data/eval.jsonl", metadata={"help": "prepared JSONL (id, question, answer, gold)"}
    )
    out: str | None = field(
        default=None, metadata={"help": "output folder (default: runs/eval/<model>-<timestamp>)"}
    )
    limit: int | None = field(default=None, metadata={"help": "only the first N questions"})
    shard: str | None = field(
        default=None,
        metadata={
            "help": "I/N: only every N-th question (of --limit), starting at I (0 <= I < N); "
            "`grpo-gsm8k merge` combines the N shard folders into the run one process would write"
        },
    )
    samples: int | None = field(
        default=None,
        metadata={
            "help": "K sampled completions per question (default: one greedy completion); adds "
            "pass@k and maj@k"
        },
    )
    batch_size: int = field(default=32, metadata={"help": "hf backend: prompts per generate call"})
    tensor_parallel_size: int = field(default=1, metadata={"help": "vllm: GPUs per engine"})
    data_parallel_size: int = field(default=1, metadata={"help": "vllm: engine replicas"})
    chunk_size: int | None = field(
        default=None,
        metadata={
            "help": "questions per generate call, appended to samples.jsonl after each (what a "
            "crash can lose; default: 64 for hf, 256 for vllm)"
        },
    )

    def sampling(self) -> SamplingSettings:
        """Greedy unless ``samples`` is set; raises EvalError on inconsistent settings."""
        if self.samples is None:
            if self.temperature is not None or self.top_p is not None:
                raise EvalError("--temperature/--top-p need --samples K (greedy otherwise)")
            return SamplingSettings(self.max_new_tokens, 1, 0.0, 1.0, self.seed)
        if self.samples < 1:
            raise EvalError(f"--samples must be at least 1, got {self.samples}")
        temperature = 1.0 if self.temperature is None else self.temperature
        top_p = 1.0 if self.top_p is None else self.top_p
        if not temperature > 0 or not math.isfinite(temperature):
            raise EvalError(f"--temperature must be > 0 with --samples, got {temperature}")
        if not 0 < top_p <= 1:
            raise EvalError(f"--top-p must be in (0, 1], got {top_p}")
        return SamplingSettings(self.max_new_tokens, self.samples, temperature, top_p, self.seed)

    def check(self) -> SamplingSettings:
        """Every check that needs no model; the decoding settings."""
        for name in ("limit", "chunk_size", "max_new_tokens", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise EvalError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        for name in ("tensor_parallel_size", "data_parallel_size"):
            if getattr(self, name) < 1:
                raise EvalError(f"--{name.replace('_', '-')} must be at least 1")
        if self.prompt not in PROMPT_STYLES:
            styles = ", ".join(PROMPT_STYLES)
            raise EvalError(f"--prompt must be one of {styles}, got {self.prompt!r}")
        if self.backend not in BACKENDS:
            raise EvalError(f"--backend must be hf, vllm or auto, got {self.backend!r}")
        if self.dtype not in DTYPES:
            raise EvalError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        parse_shard(self.shard)
        return self.sampling()


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` (ASCII digits) -> ``(I, N)`` with ``0 <= I < N``; None stays None."""
    if text is None:
        return None
    match = re.fullmatch(r"([0-9]+)/([0-9]+)", text)
    if not match or int(match[1]) >= int(match[2]):
        raise EvalError(
            f"--shard must be I/N with ASCII digits and 0 <= I < N (e.g. 0/4), got {text!r}"
        )
    return int(match[1]), int(match[2])


def default_out_dir(model: str) -> Path:
    """``runs/eval/<model name>-<timestamp>``; a ``checkpoint-N`` folder keeps its parent's name."""
    path = Path(model.rstrip("/"))
    name = path.name or model
    if name.startswith("checkpoint") and path.parent.name:
        name = f"{path.parent.name}-{name}"
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")
    return Path("runs") / "eval" / f"{name or 'model'}-{time.strftime('%Y%m%d-%H%M%S')}"


def select_examples(config: EvalConfig) -> list[Example]:
    """The questions of this run: the first ``limit``, then every N-th from I (``shard``)."""
    examples = load_prepared(config.data)[: config.limit]
    shard = parse_shard(config.shard)
    if shard is not None:  # every N-th question: deterministic, and balanced across shards
        examples = examples[shard[0] :: shard[1]]
        if not examples:
            raise EvalError(f"--shard {config.shard}: no questions (fewer than {shard[1]})")
    return examples


# ------------------------------------------------------------------------------- the run setup


@dataclass
class EvalSetup:
    """Everything decided before the model loads; ``identity`` is what a run folder records."""

    config: EvalConfig
    sampling: SamplingSettings
    model_path: str
    model_source: str
    tokenizer: Any
    style: PromptStyle
    template: dict[str, Any]
    hardware: HardwareChoice
    data: dict[str, Any]  # the data file's fingerprint with limit and shard
    identity: dict[str, Any]

    @property
    def backend(self) -> str:
        return self.hardware.backend

    @property
    def chunk_size(self) -> int:
        return self.config.chunk_size or (64 if self.backend == "hf" else 256)

    def summary_setup(self) -> dict[str, Any]:
        """The run fields of summary.json (:data:`.summary.SETUP_FIELDS`)."""
        config, backend = self.config, self.backend
        return {
            "model": config.model,
            "model_path": self.model_path,
            "model_source": self.model_source,
            "backend": backend,
            "hardware": self.hardware.to_dict(),
            "decoding": {**asdict(self.sampling), "greedy": self.sampling.temperature == 0},
            "prompt_style": self.style,
            "backend_settings": {
                "dtype": self.hardware.dtype,
                "batch_size": config.batch_size if backend == "hf" else None,
                "tensor_parallel_size": config.tensor_parallel_size,
                "data_parallel_size": config.data_parallel_size,
                "gpu_memory_utilization": config.gpu_memory_utilization,
                "chunk_size": self.chunk_size,
                "trust_remote_code": config.trust_remote_code,
            },
            "identity": self.identity,
        }


def eval_setup(config: EvalConfig, sampling: SamplingSettings) -> EvalSetup:
    """Resolve the model and tokenizer, the prompt and the hardware choice; no weights load."""
    from transformers import AutoTokenizer

    from ..models import resolve_model

    resolved = resolve_model(config.model, config.trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(
        resolved.path, trust_remote_code=config.trust_remote_code
    )
    style = resolve_prompt_style(config.prompt, tokenizer)
    template = prompt_template(style, tokenizer)
    hardware = choose(config.backend, config.dtype)  # explicit settings win
    print(f"hardware: {hardware.log_line()}", flush=True)
    data = fingerprint(config.data)
    shard = parse_shard(config.shard)
    shard_text = f"{shard[0]}/{shard[1]}" if shard else None
    identity = {
        "model_path": resolved.path,
        "model_sha256": model_sha256(resolved.path),
        "backend": hardware.backend,
        "dtype": hardware.dtype,
        "prompt_style": style,
        "prompt_template": template,
        "decoding": asdict(sampling),
        "data_sha256": data["sha256"],
        "limit": config.limit,
        "shard": shard_text,
    }
    return EvalSetup(
        config, sampling, resolved.path, resolved.source, tokenizer, style, template, hardware,
        {**data, "limit": config.limit, "shard": shard_text}, identity,
    )  # fmt: skip


# ------------------------------------------------------------------------------------ the run


def run(config: EvalConfig) -> EvalSummary:
    """Evaluate ``config.model`` on ``config.data``; write samples.jsonl and summary.json in the
    output folder and return the summary. Resumes an interrupted run in the same folder."""
    started = time.perf_counter()
    sampling = config.check()
    examples = select_examples(config)
    out = Path(config.out) if config.out else default_out_dir(config.model)
    check_output_dir(out)  # before the model resolves, which can take minutes
    setup = eval_setup(config, sampling)
    run: RunFolder | None = None
    try:
        run = open_run(out, setup.identity, {e.id for e in examples})
        if run.finished is not None:
            print(f"{out}: already complete ({run.finished['n']} questions); summary below")
            print_summary(run.finished)
            return cast(EvalSummary, run.finished)
        summary = complete_run(setup, run, examples, started)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        kept = len(run.rows) if run else 0
        raise EvalError(
            f"{out}: no space left on the device; {kept} of {len(examples)} questions are kept "
            f"in {SAMPLES}: free some space and rerun the same command to resume"
        ) from None
    print_summary(summary)
    return summary


def complete_run(
    setup: EvalSetup, run: RunFolder, examples: list[Example], started: float
) -> EvalSummary:
    """Generate the questions ``run`` lacks, then write and return the summary."""
    todo = run.todo(examples)
    if run.rows:
        print(f"{run.path}: resuming, {len(run.rows)} questions done, {len(todo)} to go")
    load_s = None
    if todo:
        backend, load_s = load_model(setup, run)
        try:
            generate_rows(backend, setup, run, todo, len(examples))
        finally:
            backend.close()
    wanted = {e.id for e in examples}
    scored = [r for r in run.rows if r["id"] in wanted]
    summary = build_summary(
        scored, setup=setup.summary_setup(), out=run.path, resumed_rows=len(scored) - len(todo),
        model_load_s=load_s, total_s=time.perf_counter() - started, data=setup.data,
        prompt_template=setup.template,
    )  # fmt: skip
    write_json(run.path / SUMMARY, summary)
    return summary


def load_model(setup: EvalSetup, run: RunFolder) -> tuple[Backend, float]:
    """The backend with the model loaded, and the seconds it took; a model that does not load
    leaves no run folder behind when nothing was generated yet."""
    from ..generation import load_backend

    config = setup.config
    options: dict[str, Any] = {
        "dtype": setup.hardware.dtype,
        "trust_remote_code": config.trust_remote_code,
    }
    if setup.backend == "hf":
        options["batch_size"] = config.batch_size
    else:
        options.update(
            tensor_parallel_size=config.tensor_parallel_size,
            data_parallel_size=config.data_parallel_size,
            gpu_memory_utilization=config.gpu_memory_utilization,
            seed=config.seed,
        )
    t0 = time.perf_counter()
    try:
        backend = load_backend(setup.backend, setup.model_path, **options)
    except BaseException as e:
        run.discard_if_empty()
        if isinstance(e, UserError) or not isinstance(e, Exception):
            raise
        reason = " ".join(str(e).split())[:200]
        raise EvalError(
            f"{setup.model_path}: the {setup.backend} backend could not load the model "
            f"({type(e).__name__}: {reason})"
        ) from None
    return backend, time.perf_counter() - t0


def generate_rows(
    backend: Backend, setup: EvalSetup, run: RunFolder, todo: list[Example], total: int
) -> None:
    """Generate and grade ``todo`` chunk by chunk, appending each chunk's rows to samples.jsonl
    and to ``run.rows``. A chunk that cannot be appended whole is cut off the file again."""
    tokenizer, style = setup.tokenizer, setup.style
    try:
        for start in range(0, len(todo), setup.chunk_size):
            chunk = todo[start : start + setup.chunk_size]
            prompts = [render_prompt(e.question, tokenizer, style) for e in chunk]
            t0 = time.perf_counter()
            groups = backend.generate(prompts, setup.sampling)
            gen_s = time.perf_counter() - t0
            new_rows = [
                sample_row(example, prompt, [c.text for c in group], group, gen_s / len(chunk))
                for example, prompt, group in zip(chunk, prompts, groups, strict=True)
            ]
            size = run.samples.stat().st_size if run.samples.is_file() else 0
            try:
                append_jsonl(run.samples, new_rows)
            except OSError:
                if run.samples.is_file():
                    os.truncate(run.samples, size)  # no torn or partial chunk
                raise
            run.rows.extend(new_rows)
            print(f"{len(run.rows)}/{total} questions done ({run.samples})", flush=True)
    except KeyboardInterrupt:
        print(f"{len(run.rows)} questions saved in {run.samples}; rerun the same command to resume")
        raise


def sample_row(
    example: Example, prompt: str, texts: list[str], group: list[Any], gen_s: float
) -> dict[str, Any]:
    """One samples.jsonl row: the question, its prompt, completions and their grades."""
    return {
        "id": example.id,
        "question": example.question,
        "gold": example.gold,
        "prompt": prompt,
        "completions": texts,
        **score_completions(texts, example.gold, [c.truncated for c in group]),
        "tokens": [c.tokens for c in group],
        "truncated": [c.truncated for c in group],
        "gen_s": gen_s,  # this row's share of the chunk's time
    }
