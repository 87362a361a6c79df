"""The eval contract: what identifies a run (``run.json``), what ``summary.json`` holds, and the
one function that builds it, for ``eval`` and ``merge`` alike.

- :data:`IDENTITY_FIELDS` are every setting that changes a run's rows. ``run.json`` records them
  when a run folder is made, ``summary.json`` repeats them under ``identity``; a resumed eval and
  the shards of one ``merge`` must agree on each.
- :class:`EvalSummary` is every field of ``summary.json``; :func:`build_summary` makes one from
  the rows and the run's setup; :func:`summarize` computes its metrics from ``samples.jsonl``
  rows; :func:`print_summary` prints its table.
- :func:`read_summary` reads a ``summary.json`` back and names the file and the field that is
  missing or of the wrong type (another tool's, a damaged or an older one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast

from ..grading import MODES, same_number
from ..labels import METRIC_LABELS, ci_text, pct
from ..runfiles import SAMPLES, SUMMARY, RunFileError, provenance, read_json
from ..stats import majority, pass_at_k, wilson

# ------------------------------------------------------------------------------------ identity

IDENTITY_FIELDS = (
    "model_path",  # the resolved checkpoint folder
    "model_sha256",  # run_folder.model_sha256: config, tokenizer, weight files sampled
    "backend",  # the chosen one: vllm or hf
    "dtype",  # the chosen one
    "prompt_style",  # chat or raw (auto resolved)
    "prompt_template",  # prompts.prompt_template: style, system prompt and chat template hashes
    "decoding",  # max_new_tokens, n, temperature, top_p, seed
    "data_sha256",  # the data file
    "limit",  # --limit (None: every question)
    "shard",  # --shard I/N (None: not a shard)
)


def identity_diff(recorded: Mapping[str, Any], identity: Mapping[str, Any]) -> list[str]:
    """The fields of :data:`IDENTITY_FIELDS` whose values differ (a missing one differs)."""
    missing = object()
    return [k for k in IDENTITY_FIELDS if recorded.get(k, missing) != identity.get(k, missing)]


def diff_text(
    old: Mapping[str, Any], new: Mapping[str, Any], fields: list[str], names: tuple[str, str]
) -> str:
    """``(dtype, limit differ): recorded dtype=float32 limit=1, now dtype=bfloat16 limit=2``:
    the fields, then the values of those that are short (a template or decoding is only named).
    """
    text = f"({', '.join(fields)} differ)"
    short = [
        k
        for k in fields
        if all(v is None or isinstance(v, int | float | str) for v in (old.get(k), new.get(k)))
        and len(f"{old.get(k)}{new.get(k)}") <= 60
    ]
    if short:
        values = [
            " ".join(f"{k}={side.get(k, 'unrecorded')}" for k in short) for side in (old, new)
        ]
        text += f": {names[0]} {values[0]}, {names[1]} {values[1]}"
    return text


# ------------------------------------------------------------------------------------- summary

# copied from the run's setup (eval) or the first shard's summary (merge)
SETUP_FIELDS = (
    "model",
    "model_path",
    "model_source",
    "backend",
    "hardware",
    "decoding",
    "prompt_style",
    "backend_settings",
    "identity",
)

EvalSummary = TypedDict(
    "EvalSummary",
    {
        # the run: what was evaluated and how (SETUP_FIELDS) and where it was written
        "model": str,  # what the user typed
        "model_path": str,
        "model_source": str | None,  # embedded-gguf, local, lora-merged or hub
        "backend": str,
        "hardware": dict[str, Any] | None,  # hardware.HardwareChoice.to_dict()
        "decoding": dict[str, Any],  # SamplingSettings fields and greedy
        "prompt_style": str,
        "backend_settings": dict[str, Any] | None,
        "identity": dict[str, Any],  # IDENTITY_FIELDS, as run.json
        "out": str,
        # the metrics (summarize)
        "n": int,
        "samples_per_question": int,
        "accuracy": dict[str, float],  # by grading mode
        "ci95": dict[str, list[float]],
        "format_rate": float,
        "format_ci95": list[float],
        "answer_line_rate": NotRequired[float],
        "answer_line_ci95": NotRequired[list[float]],
        "completions": int,
        "mean_completion_tokens": float,
        "truncation_rate": float,
        "generation_s": float,
        "prompts_per_s": float | None,
        "generated_tokens_per_s": float | None,
        "pass@k": NotRequired[dict[str, dict[str, float]]],
        "maj@k": NotRequired[dict[str, float]],
        # timing of this run
        "resumed_rows": int,
        "model_load_s": float | None,
        "total_s": float,
        # provenance (runfiles.provenance)
        "versions": dict[str, str | None],
        "command": list[str],
        "data": dict[str, Any],  # path, sha256, limit, shard
        "prompt_template": dict[str, Any] | None,
        "machine": dict[str, Any],
        "timestamp": str,
        # merge only: the shard folders
        "merged_from": NotRequired[list[dict[str, Any]]],
    },
)


def build_summary(
    rows: list[dict[str, Any]],
    *,
    setup: Mapping[str, Any],
    out: str | Path,
    resumed_rows: int,
    model_load_s: float | None,
    total_s: float,
    data: dict[str, Any],
    prompt_template: dict[str, Any] | None,
    merged_from: list[dict[str, Any]] | None = None,
) -> EvalSummary:
    """The whole ``summary.json`` of a run: its setup (:data:`SETUP_FIELDS`), ``out``, the
    metrics of ``rows``, timing and provenance (``merged_from`` for a merged run)."""
    summary: dict[str, Any] = {
        **{k: setup.get(k) for k in SETUP_FIELDS if k != "identity"},
        "out": str(out),
        **summarize(rows),
        "resumed_rows": resumed_rows,
        "model_load_s": model_load_s,
        "total_s": total_s,
        "identity": setup["identity"],
        **provenance(data=data, prompt_template=prompt_template),
    }
    if merged_from is not None:
        summary["merged_from"] = merged_from
    return cast(EvalSummary, summary)


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
    if all("answer_line_ok" in r for r in rows):  # runs from older versions have none
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
        out.update(at_k(rows, k_max))
    return out


def at_k(rows: list[dict[str, Any]], k_max: int) -> dict[str, Any]:
    """pass@k in both modes and maj@k (flexible) for k = 1, the powers of two below K, and K."""
    n = len(rows)
    ks = sorted({1, k_max, *(2**i for i in range(1, k_max.bit_length()) if 2**i < k_max)})
    return {
        "pass@k": {
            f"pass@{k}": {
                m: sum(pass_at_k(k_max, sum(r[f"correct_{m}"][:k_max]), k) for r in rows) / n
                for m in MODES
            }
            for k in ks
        },
        "maj@k": {
            f"maj@{k}": sum(same_number(majority(r["pred_flexible"][:k]), r["gold"]) for r in rows)
            / n
            for k in ks
        },
    }


def print_summary(summary: Mapping[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"eval {summary['model']} ({summary['backend']}, n={summary['n']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")
    for m in MODES:
        rate, ci = summary["accuracy"][m], summary["ci95"][m]
        table.add_row(METRIC_LABELS[f"accuracy_{m}"], pct(rate), ci_text(ci))
    table.add_row(
        METRIC_LABELS["format"], pct(summary["format_rate"]), ci_text(summary["format_ci95"])
    )
    if "answer_line_rate" in summary:
        rate, ci = summary["answer_line_rate"], summary["answer_line_ci95"]
        table.add_row(METRIC_LABELS["answer_line"], pct(rate), ci_text(ci))
    for name, values in summary.get("pass@k", {}).items():
        both = f"{pct(values['strict'])} / {pct(values['flexible'])}"
        table.add_row(f"{name} (strict / flexible)", both, "")
    for name, value in summary.get("maj@k", {}).items():
        table.add_row(f"{name} (flexible)", pct(value), "")
    table.add_row("mean completion tokens", f"{summary['mean_completion_tokens']:.1f}", "")
    table.add_row(METRIC_LABELS["truncated"], pct(summary["truncation_rate"]), "")
    if summary.get("generated_tokens_per_s"):
        table.add_row("generated tokens/s", f"{summary['generated_tokens_per_s']:.1f}", "")
        table.add_row("prompts/s", f"{summary['prompts_per_s']:.2f}", "")
    table.add_row("generation time", f"{summary['generation_s']:.1f} s", "")
    if summary.get("model_load_s") is not None:
        table.add_row("model load time", f"{summary['model_load_s']:.1f} s", "")
    Console().print(table)
    print(f"wrote {summary['out']}/{SUMMARY} and {SAMPLES}")


# ------------------------------------------------------------------------------- reading back


def read_summary(folder: str | Path, fields: Iterable[str]) -> dict[str, Any]:
    """``folder``/summary.json, with each of ``fields`` present: a dotted name (``data.shard``)
    is a field of a field. A missing field is a one-line error naming the file and the field."""
    path = Path(folder) / SUMMARY
    summary = read_json(path)
    for name in fields:
        value: Any = summary
        for part in name.split("."):
            if not isinstance(value, dict):
                raise RunFileError(f"{path}: field '{name}' must be inside an object")
            if part not in value:
                raise RunFileError(
                    f"{path}: missing field '{name}' (not a summary.json of this version's eval)"
                )
            value = value[part]
    n = summary.get("n")
    if "n" in fields and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
        raise RunFileError(f"{path}: field 'n' must be a count, got {n!r}")
    return summary
