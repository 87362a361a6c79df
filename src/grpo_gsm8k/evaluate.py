"""``grpo-gsm8k eval``: generate answers to GSM8K questions, grade them, write samples + summary.

:func:`score` is the metric of a batch of completions (also used by the in-training eval);
:func:`run_eval` is the command.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .data import (
    PromptStyle,
    atomic_write_text,
    data_fingerprint,
    load_examples,
    package_versions,
    render_prompt,
    to_jsonl,
)
from .generation import SamplingSettings
from .grading import MODES, extract, same_number
from .stats import majority, pass_at_k, wilson


def score_completions(texts: list[str], gold: str) -> dict[str, list[Any]]:
    """Per-completion grading of one question's completions: lists parallel to ``texts`` under
    pred_strict, correct_strict, pred_flexible, correct_flexible and format_ok (a ``#### N`` line
    was found, i.e. strict extraction found a number)."""
    out: dict[str, list[Any]] = {}
    for mode in ("strict", "flexible"):
        preds = [extract(t, mode) for t in texts]
        out[f"pred_{mode}"] = preds
        out[f"correct_{mode}"] = [same_number(p, gold) for p in preds]
    out["format_ok"] = [p is not None for p in out["pred_strict"]]
    return out


def score(texts: list[str], golds: list[str]) -> dict[str, float]:
    """Accuracy (strict, flexible) and format rate of one completion per gold answer.

    Keys: ``accuracy_strict``, ``accuracy_flexible``, ``format_rate`` (fractions in [0, 1]) and
    ``n``. Golds are canonical numbers (``Example.gold``)."""
    if len(texts) != len(golds):
        raise ValueError(f"score: {len(texts)} texts but {len(golds)} golds")
    n = len(texts)
    if n == 0:
        return {"accuracy_strict": 0.0, "accuracy_flexible": 0.0, "format_rate": 0.0, "n": 0}
    strict = flexible = fmt = 0
    for text, gold in zip(texts, golds, strict=True):
        g = score_completions([text], gold)
        strict += g["correct_strict"][0]
        flexible += g["correct_flexible"][0]
        fmt += g["format_ok"][0]
    return {
        "accuracy_strict": strict / n,
        "accuracy_flexible": flexible / n,
        "format_rate": fmt / n,
        "n": n,
    }


# ------------------------------------------------------------------------------------ settings


@dataclass
class EvalSettings:
    model: str  # alias, local checkpoint / training output / LoRA adapter folder, or hub id
    data: str = "data/eval.jsonl"  # prepared JSONL (id, question, answer, gold)
    out: str | None = None  # output folder; None: runs/eval/<model>-<timestamp>
    limit: int | None = None  # evaluate only the first N questions
    # "I/N": only every N-th of those questions, starting at I (0 <= I < N); `grpo-gsm8k merge`
    # combines the N shards into the run a single process would have written
    shard: str | None = None
    backend: str = "auto"  # hf, vllm, or auto (vllm when importable)
    prompt: str = "chat"  # chat (template + system prompt), raw (plain text), auto (see below)
    max_new_tokens: int = 1024
    samples: int | None = None  # K completions per question (sampling); None: one greedy
    temperature: float | None = None  # sampling temperature (only with samples; default 1.0)
    top_p: float | None = None  # nucleus sampling (only with samples; default 1.0)
    seed: int = 0
    batch_size: int = 32  # hf backend: prompts per generate call
    dtype: str = "auto"
    tensor_parallel_size: int = 1  # vllm
    data_parallel_size: int = 1  # vllm: independent engine replicas
    gpu_memory_utilization: float | None = None  # vllm; None: 0.9 on GPU, 0.25 of RAM on CPU
    trust_remote_code: bool = False
    # questions generated between appends to samples.jsonl (what a crash can lose); None: 64 for
    # hf, 256 for vllm (vLLM is fastest with many prompts in flight)
    chunk_size: int | None = None
    command: list[str] = field(default_factory=list)  # the command line, recorded in summary

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
        if temperature <= 0:
            raise EvalError(f"--temperature must be > 0 with --samples, got {temperature}")
        if not 0 < top_p <= 1:
            raise EvalError(f"--top-p must be in (0, 1], got {top_p}")
        return SamplingSettings(self.max_new_tokens, self.samples, temperature, top_p, self.seed)


class EvalError(Exception):
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


def choose_prompt_style(style: str, tokenizer: Any) -> PromptStyle:
    """``auto``: chat when the tokenizer has a chat template, else raw (base models)."""
    if style == "auto":
        return "chat" if getattr(tokenizer, "chat_template", None) else "raw"
    if style not in ("chat", "raw"):
        raise EvalError(f"--prompt must be chat, raw or auto, got {style!r}")
    return "chat" if style == "chat" else "raw"


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
    tokens = [t for r in rows for t in r["tokens"]]
    truncated = [t for r in rows for t in r["truncated"]]
    out["completions"] = len(tokens)
    out["mean_completion_tokens"] = sum(tokens) / len(tokens) if tokens else 0.0
    out["truncation_rate"] = sum(truncated) / len(truncated) if truncated else 0.0
    gen_s = sum(r.get("gen_s", 0.0) for r in rows)
    out["wall_s"] = gen_s
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
    table.add_row("generation time", f"{summary['wall_s']:.1f} s", "")
    if summary.get("model_load_s") is not None:
        table.add_row("model load time", f"{summary['model_load_s']:.1f} s", "")
    Console().print(table)
    print(f"wrote {summary['out']}/summary.json and samples.jsonl")


# ------------------------------------------------------------------------------- samples file


def read_samples(path: Path) -> list[dict[str, Any]]:
    """Rows of a samples.jsonl being resumed. A torn last line (the process died mid-write) is
    dropped and the file rewritten without it; a bad line elsewhere is an error."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    rows = []
    for i, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines):
                atomic_write_text(path, "".join(lines[:-1]))
                break
            raise EvalError(
                f"{path}:{i}: malformed JSON; move the file away to start over"
            ) from None
    return rows


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(to_jsonl(rows))
        f.flush()
        os.fsync(f.fileno())


# ------------------------------------------------------------------------------------ the run


def run_eval(settings: EvalSettings) -> dict[str, Any]:
    """Evaluate ``settings.model`` on ``settings.data``; write samples.jsonl and summary.json in
    the output folder and return the summary. Resumes an interrupted run in the same folder."""
    from transformers import AutoTokenizer

    from .generation import load_backend, vllm_available
    from .models import resolve_model

    started = time.time()
    sampling = settings.sampling()
    if settings.limit is not None and settings.limit < 1:
        raise EvalError(f"--limit must be at least 1, got {settings.limit}")
    if settings.chunk_size is not None and settings.chunk_size < 1:
        raise EvalError(f"--chunk-size must be at least 1, got {settings.chunk_size}")
    shard = parse_shard(settings.shard)
    shard_text = f"{shard[0]}/{shard[1]}" if shard else None
    examples = load_examples(settings.data)[: settings.limit]
    if shard is not None:  # every N-th question: deterministic, and balanced across shards
        examples = examples[shard[0] :: shard[1]]
        if not examples:
            raise EvalError(f"--shard {settings.shard}: no questions (fewer than {shard[1]})")
    data = data_fingerprint(settings.data)
    resolved = resolve_model(settings.model, settings.trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(
        resolved.path, trust_remote_code=settings.trust_remote_code
    )
    style = choose_prompt_style(settings.prompt, tokenizer)
    backend_name = settings.backend
    if backend_name == "auto":
        backend_name = "vllm" if vllm_available() else "hf"
    if backend_name not in ("hf", "vllm"):
        raise EvalError(f"--backend must be hf, vllm or auto, got {settings.backend!r}")
    chunk_size = settings.chunk_size or (64 if backend_name == "hf" else 256)
    out = Path(settings.out) if settings.out else default_out_dir(settings.model)

    # what must match for a run folder to be resumed
    identity = {
        "model_path": resolved.path,
        "data_sha256": data["sha256"],
        "prompt_style": style,
        "decoding": asdict(sampling),
        "shard": shard_text,
    }
    out.mkdir(parents=True, exist_ok=True)
    run_file = out / "run.json"
    if run_file.is_file():
        previous = json.loads(run_file.read_text(encoding="utf-8"))
        diff = [k for k in identity if previous.get(k) != identity[k]]
        if diff:
            raise EvalError(
                f"{out} holds a run with other settings ({', '.join(diff)} differ); "
                "pass another --out or delete that folder"
            )
    else:
        atomic_write_text(run_file, json.dumps(identity, indent=2) + "\n")

    samples_path = out / "samples.jsonl"
    summary_path = out / "summary.json"
    rows = read_samples(samples_path)
    done = {r["id"] for r in rows}
    todo = [e for e in examples if e.id not in done]
    wanted = {e.id for e in examples}
    if not todo and summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
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
            "dtype": settings.dtype,
            "trust_remote_code": settings.trust_remote_code,
        }
        if backend_name == "hf":
            options["batch_size"] = settings.batch_size
        else:
            options.update(
                tensor_parallel_size=settings.tensor_parallel_size,
                data_parallel_size=settings.data_parallel_size,
                gpu_memory_utilization=settings.gpu_memory_utilization,
                seed=settings.seed,
            )
        backend = load_backend(backend_name, resolved.path, **options)
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
                append_rows(samples_path, new_rows)
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
        "model": settings.model,
        "model_path": resolved.path,
        "model_source": resolved.source,
        "backend": backend_name,
        "out": str(out),
        **summarize(scored),
        "resumed_rows": len(scored) - len(todo),
        "model_load_s": load_s,
        "total_s": time.time() - started,
        "decoding": {**asdict(sampling), "greedy": sampling.temperature == 0},
        "prompt_style": style,
        "data": {**data, "limit": settings.limit, "shard": shard_text},
        "backend_settings": {
            "dtype": settings.dtype,
            "batch_size": settings.batch_size if backend_name == "hf" else None,
            "tensor_parallel_size": settings.tensor_parallel_size,
            "data_parallel_size": settings.data_parallel_size,
            "gpu_memory_utilization": settings.gpu_memory_utilization,
            "chunk_size": chunk_size,
            "trust_remote_code": settings.trust_remote_code,
        },
        "identity": identity,
        "versions": package_versions(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": settings.command,
    }
    atomic_write_text(summary_path, json.dumps(summary, indent=2) + "\n")
    print_summary(summary)
    return summary
