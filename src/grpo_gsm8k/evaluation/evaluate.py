"""``grpo-gsm8k eval``: generate answers to GSM8K questions, grade them, write samples + summary;
``grpo-gsm8k grade``: re-grade saved generations from any tool.

:class:`EvalConfig` is every option of ``eval`` (the CLI is generated from it); :func:`run_eval`
is the command. Grading itself is :mod:`grpo_gsm8k.grading`'s.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from ..data import DataError, load_prepared, require_str
from ..errors import UserError
from ..generation import SamplingSettings
from ..grading import MODES, extract, parse_gold, same_number, score_completions
from ..hardware import BACKENDS, DTYPES, choose
from ..prompts import PROMPT_STYLES, prompt_template, render_prompt, resolve_prompt_style
from ..runfiles import (
    append_jsonl,
    check_output_dir,
    fingerprint,
    output_dir,
    provenance,
    read_json,
    read_jsonl,
    write_json,
)
from ..stats import majority, pass_at_k, wilson

# ------------------------------------------------------------------------------------ settings


@dataclass
class EvalConfig:
    """Options of ``grpo-gsm8k eval`` (each is also a ``--flag``; ``--config FILE.yaml`` sets them).

    Greedy decoding unless ``samples`` is set. An interrupted run resumes from ``samples.jsonl``
    in the same ``out`` folder; a folder holding a run with other settings is refused."""

    positional: ClassVar[tuple[str, ...]] = ("model",)

    model: str = field(
        metadata={
            "help": "'smollm2-135m' (embedded), a checkpoint / training output / LoRA adapter "
            "folder, or a hub id"
        }
    )
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
    backend: Literal["auto", "vllm", "hf"] = field(
        default="auto",
        metadata={
            "help": "vllm, hf (transformers generate) or auto: decided from the hardware (vllm on "
            "GPUs and AVX-512 CPUs when it imports, else hf; see grpo_gsm8k.hardware)"
        },
    )
    prompt: Literal["chat", "raw", "seed", "auto"] = field(
        default="chat",
        metadata={
            "help": "chat template + system prompt, raw text for base models, seed (the published "
            "seed scripts' raw prompt, byte for byte), or auto (chat when the tokenizer has a "
            "chat template)"
        },
    )
    max_new_tokens: int = field(default=1024, metadata={"help": "new tokens per completion"})
    samples: int | None = field(
        default=None,
        metadata={
            "help": "K sampled completions per question (default: one greedy completion); adds "
            "pass@k and maj@k"
        },
    )
    temperature: float | None = field(
        default=None, metadata={"help": "sampling temperature, with --samples (default 1.0)"}
    )
    top_p: float | None = field(
        default=None, metadata={"help": "nucleus sampling, with --samples (default 1.0)"}
    )
    seed: int = field(default=0, metadata={"help": "random seed of sampling"})
    batch_size: int = field(default=32, metadata={"help": "hf backend: prompts per generate call"})
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = field(
        default="auto",
        metadata={
            "help": "model dtype, or auto: decided from the hardware (on CPU bfloat16 for vllm "
            "where the CPU has bf16 units, else float32; on GPU the checkpoint's)"
        },
    )
    tensor_parallel_size: int = field(default=1, metadata={"help": "vllm: GPUs per engine"})
    data_parallel_size: int = field(default=1, metadata={"help": "vllm: engine replicas"})
    gpu_memory_utilization: float | None = field(
        default=None,
        metadata={
            "help": "vllm: share of GPU memory, or of RAM on CPU (default 0.9 on GPU, 0.25 on CPU)"
        },
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "allow the model's own Python code from the hub"}
    )
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
            raise EvalError(f"--prompt must be chat, raw or auto, got {self.prompt!r}")
        if self.backend not in BACKENDS:
            raise EvalError(f"--backend must be hf, vllm or auto, got {self.backend!r}")
        if self.dtype not in DTYPES:
            raise EvalError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        parse_shard(self.shard)
        return self.sampling()


class EvalError(UserError):
    """Inconsistent eval settings or a run folder that cannot be resumed; one-line message."""


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``; None stays None."""
    if text is None:
        return None
    index, sep, count = text.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise EvalError(f"--shard must be I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
    return int(index), int(count)


def default_out_dir(model: str) -> Path:
    """``runs/eval/<model name>-<timestamp>``; a ``checkpoint-N`` folder keeps its parent's name."""
    path = Path(model.rstrip("/"))
    name = path.name or model
    if name.startswith("checkpoint") and path.parent.name:
        name = f"{path.parent.name}-{name}"
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")
    return Path("runs") / "eval" / f"{name or 'model'}-{time.strftime('%Y%m%d-%H%M%S')}"


# ------------------------------------------------------------------------------------- summary


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The metrics of samples.jsonl rows.

    One completion per question: accuracy and format rate of that completion, Wilson 95% CIs.
    K completions: accuracy/format rate are means over all samples; their CIs are Wilson on the
    n questions with the mean as the proportion (the samples of one question are not independent);
    pass@k (unbiased estimator) in both modes and maj@k (majority vote of flexible answers, ties to
    the answer seen first) for k = 1, powers of two below K, and K."""
    n = len(rows)
    k_max = min(len(r["completions"]) for r in rows) if rows else 1
    out: dict[str, Any] = {"n": n, "samples_per_question": k_max}

    def mean_rate(key: str) -> float:
        return sum(sum(r[key]) / len(r[key]) for r in rows) / n if n else 0.0

    acc = {m: mean_rate(f"correct_{m}") for m in MODES}
    out["accuracy"] = acc
    out["ci95"] = {m: list(wilson(acc[m] * n, n)) for m in MODES}
    out["format_rate"] = mean_rate("format_ok")
    out["format_ci95"] = list(wilson(out["format_rate"] * n, n))
    if all("answer_line_ok" in r for r in rows):  # runs from before this field have none
        out["answer_line_rate"] = mean_rate("answer_line_ok")
        out["answer_line_ci95"] = list(wilson(out["answer_line_rate"] * n, n))
    tokens = [t for r in rows for t in r["tokens"]]
    truncated = [t for r in rows for t in r["truncated"]]
    out["completions"] = len(tokens)
    out["mean_completion_tokens"] = sum(tokens) / len(tokens) if tokens else 0.0
    out["truncation_rate"] = sum(truncated) / len(truncated) if truncated else 0.0
    gen_s = sum(r.get("gen_s", 0.0) for r in rows)
    out["generation_s"] = gen_s
    out["prompts_per_s"] = n / gen_s if gen_s > 0 else None
    out["generated_tokens_per_s"] = sum(tokens) / gen_s if gen_s > 0 else None
    if k_max > 1:
        ks = sorted({1, k_max, *(2**i for i in range(1, k_max.bit_length()) if 2**i < k_max)})
        out["pass@k"] = {
            f"pass@{k}": {
                m: sum(pass_at_k(k_max, sum(r[f"correct_{m}"][:k_max]), k) for r in rows) / n
                for m in MODES
            }
            for k in ks
        }
        out["maj@k"] = {
            f"maj@{k}": sum(same_number(majority(r["pred_flexible"][:k]), r["gold"]) for r in rows)
            / n
            for k in ks
        }
    return out


def print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    def pct(x: float) -> str:
        return f"{100 * x:.1f}%"

    def ci(pair: list[float]) -> str:
        return f"[{pct(pair[0])}, {pct(pair[1])}]"

    table = Table(title=f"eval {summary['model']} ({summary['backend']}, n={summary['n']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")
    for m in MODES:
        table.add_row(f"accuracy ({m})", pct(summary["accuracy"][m]), ci(summary["ci95"][m]))
    table.add_row("format (#### N)", pct(summary["format_rate"]), ci(summary["format_ci95"]))
    if "answer_line_rate" in summary:
        table.add_row(
            "ends with its one #### N line",
            pct(summary["answer_line_rate"]),
            ci(summary["answer_line_ci95"]),
        )
    for name, values in summary.get("pass@k", {}).items():
        table.add_row(
            f"{name} (strict / flexible)",
            f"{pct(values['strict'])} / {pct(values['flexible'])}",
            "",
        )
    for name, value in summary.get("maj@k", {}).items():
        table.add_row(f"{name} (flexible)", pct(value), "")
    table.add_row("mean completion tokens", f"{summary['mean_completion_tokens']:.1f}", "")
    table.add_row("truncated", pct(summary["truncation_rate"]), "")
    if summary.get("generated_tokens_per_s"):
        table.add_row("generated tokens/s", f"{summary['generated_tokens_per_s']:.1f}", "")
        table.add_row("prompts/s", f"{summary['prompts_per_s']:.2f}", "")
    table.add_row("generation time", f"{summary['generation_s']:.1f} s", "")
    if summary.get("model_load_s") is not None:
        table.add_row("model load time", f"{summary['model_load_s']:.1f} s", "")
    Console().print(table)
    print(f"wrote {summary['out']}/summary.json and samples.jsonl")


# ------------------------------------------------------------------------------------ the run


def run_eval(config: EvalConfig) -> dict[str, Any]:
    """Evaluate ``config.model`` on ``config.data``; write samples.jsonl and summary.json in the
    output folder and return the summary. Resumes an interrupted run in the same folder."""
    from transformers import AutoTokenizer

    from ..generation import load_backend
    from ..models import resolve_model

    started = time.perf_counter()
    sampling = config.check()
    shard = parse_shard(config.shard)
    shard_text = f"{shard[0]}/{shard[1]}" if shard else None
    examples = load_prepared(config.data)[: config.limit]
    if shard is not None:  # every N-th question: deterministic, and balanced across shards
        examples = examples[shard[0] :: shard[1]]
        if not examples:
            raise EvalError(f"--shard {config.shard}: no questions (fewer than {shard[1]})")
    data = fingerprint(config.data)
    out = Path(config.out) if config.out else default_out_dir(config.model)
    check_output_dir(out)  # before the model loads, which can take minutes
    resolved = resolve_model(config.model, config.trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(
        resolved.path, trust_remote_code=config.trust_remote_code
    )
    style = resolve_prompt_style(config.prompt, tokenizer)
    template = prompt_template(style, tokenizer)
    hardware = choose(config.backend, config.dtype)  # explicit settings win
    backend_name = hardware.backend
    print(f"hardware: {hardware.log_line()}", flush=True)
    chunk_size = config.chunk_size or (64 if backend_name == "hf" else 256)

    # what must match for a run folder to be resumed
    identity = {
        "model_path": resolved.path,
        "data_sha256": data["sha256"],
        "prompt_style": style,
        "prompt_template": template,
        "decoding": asdict(sampling),
        "shard": shard_text,
    }
    fresh = not out.exists()
    output_dir(out)
    run_file = out / "run.json"
    if run_file.is_file():
        previous = read_json(run_file)
        diff = [k for k in identity if previous.get(k) != identity[k]]
        if diff:
            raise EvalError(
                f"{out} holds a run with other settings ({', '.join(diff)} differ); "
                "pass another --out or delete that folder"
            )
    else:
        write_json(run_file, identity)

    samples_path = out / "samples.jsonl"
    summary_path = out / "summary.json"
    rows = []
    if samples_path.is_file():
        rows = [row for _, row in read_jsonl(samples_path, torn_tail="drop")]
    done = {r["id"] for r in rows}
    todo = [e for e in examples if e.id not in done]
    wanted = {e.id for e in examples}
    if not todo and summary_path.is_file():
        summary = read_json(summary_path)
        if summary.get("n") == len(wanted) and summary.get("identity") == identity:
            print(f"{out}: already complete ({summary['n']} questions); summary below")
            print_summary(summary)
            return summary
    if rows:
        print(f"{out}: resuming, {len(rows)} questions done, {len(todo)} to go")

    load_s = None
    if todo:
        t0 = time.perf_counter()
        options: dict[str, Any] = {
            "dtype": hardware.dtype,
            "trust_remote_code": config.trust_remote_code,
        }
        if backend_name == "hf":
            options["batch_size"] = config.batch_size
        else:
            options.update(
                tensor_parallel_size=config.tensor_parallel_size,
                data_parallel_size=config.data_parallel_size,
                gpu_memory_utilization=config.gpu_memory_utilization,
                seed=config.seed,
            )
        try:
            backend = load_backend(backend_name, resolved.path, **options)
        except BaseException as e:
            if not rows:  # nothing generated yet: leave no run folder behind
                run_file.unlink(missing_ok=True)
                if fresh and not any(out.iterdir()):
                    out.rmdir()
            if isinstance(e, UserError | KeyboardInterrupt):
                raise
            if not isinstance(e, Exception):
                raise
            reason = " ".join(str(e).split())[:200]
            raise EvalError(
                f"{resolved.path}: the {backend_name} backend could not load the model "
                f"({type(e).__name__}: {reason})"
            ) from None
        load_s = time.perf_counter() - t0
        try:
            for start in range(0, len(todo), chunk_size):
                chunk = todo[start : start + chunk_size]
                prompts = [render_prompt(e.question, tokenizer, style) for e in chunk]
                t0 = time.perf_counter()
                groups = backend.generate(prompts, sampling)
                gen_s = time.perf_counter() - t0
                new_rows = []
                for example, prompt, group in zip(chunk, prompts, groups, strict=True):
                    texts = [c.text for c in group]
                    new_rows.append(
                        {
                            "id": example.id,
                            "question": example.question,
                            "gold": example.gold,
                            "prompt": prompt,
                            "completions": texts,
                            **score_completions(texts, example.gold),
                            "tokens": [c.tokens for c in group],
                            "truncated": [c.truncated for c in group],
                            "gen_s": gen_s / len(chunk),  # this row's share of the chunk's time
                        }
                    )
                append_jsonl(samples_path, new_rows)
                rows.extend(new_rows)
                print(f"{len(rows)}/{len(examples)} questions done ({samples_path})", flush=True)
        except KeyboardInterrupt:
            print(
                f"{len(rows)} questions saved in {samples_path}; rerun the same command to resume"
            )
            raise
        finally:
            backend.close()

    scored = [r for r in rows if r["id"] in wanted]
    summary = {
        "model": config.model,
        "model_path": resolved.path,
        "model_source": resolved.source,
        "backend": backend_name,
        "hardware": hardware.to_dict(),
        "out": str(out),
        **summarize(scored),
        "resumed_rows": len(scored) - len(todo),
        "model_load_s": load_s,
        "total_s": time.perf_counter() - started,
        "decoding": {**asdict(sampling), "greedy": sampling.temperature == 0},
        "prompt_style": style,
        "backend_settings": {
            "dtype": hardware.dtype,
            "batch_size": config.batch_size if backend_name == "hf" else None,
            "tensor_parallel_size": config.tensor_parallel_size,
            "data_parallel_size": config.data_parallel_size,
            "gpu_memory_utilization": config.gpu_memory_utilization,
            "chunk_size": chunk_size,
            "trust_remote_code": config.trust_remote_code,
        },
        "identity": identity,
        **provenance(
            data={**data, "limit": config.limit, "shard": shard_text}, prompt_template=template
        ),
    }
    write_json(summary_path, summary)
    print_summary(summary)
    return summary


# ------------------------------------------------------------------------ grpo-gsm8k grade FILE


@dataclass
class GradeConfig:
    """Options of ``grpo-gsm8k grade``: re-score saved generations from any tool. Rows need
    ``completion`` and ``answer`` (a bare number, or a GSM8K solution ending in ``#### N``)."""

    positional: ClassVar[tuple[str, ...]] = ("file",)

    file: str = field(metadata={"help": "JSONL file of rows with 'completion' and 'answer'"})
    mode: Literal["strict", "flexible", "both"] = field(
        default="both", metadata={"help": "which grading mode(s) to apply"}
    )


def grade_file(config: GradeConfig) -> int:
    """Every row is checked before anything is written, so bad input leaves no partial output.
    Graded rows go to stdout as JSONL; a summary goes to stderr. Returns the exit status."""
    path = config.file
    modes = MODES if config.mode == "both" else (config.mode,)
    out = []
    for lineno, row in read_jsonl(path):
        where = f"{path}:{lineno}"
        completion = row.get("completion")
        if not isinstance(completion, str):
            raise DataError(f"{where}: field 'completion' must be a string")
        answer = require_str(row, "answer", where)
        try:
            gold = parse_gold(answer)
        except ValueError:
            raise DataError(f"{where}: field 'answer' has no number") from None
        for m in modes:
            row[f"pred_{m}"] = extract(completion, m)
            row[f"correct_{m}"] = same_number(row[f"pred_{m}"], gold)
        out.append(row)
    if not out:
        raise DataError(f"{path}: no rows")
    sys.stdout.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out))
    summary = ", ".join(f"{m} {sum(r[f'correct_{m}'] for r in out) / len(out):.1%}" for m in modes)
    print(f"graded {len(out)} rows: accuracy {summary}", file=sys.stderr)
    return 0
