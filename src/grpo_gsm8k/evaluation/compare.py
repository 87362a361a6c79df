"""``grpo-gsm8k compare RUN_A RUN_B``: paired comparison of two eval runs on their common questions.

Questions are joined on ``id``; each run's first completion is used. For accuracy (strict,
flexible), format compliance (a ``#### N`` line) and, where both runs record them, the honest
answer line (exactly one ``#### N`` line, the last one: what the ``format`` reward pays for) and
stopping (the completion ended before the token limit, i.e. 100% minus the truncation rate): both
rates with Wilson 95% CIs, the difference B - A with Newcombe's paired 95% CI (1998, method 10:
Wilson margins + correlation correction), the exact McNemar p-value (two-sided binomial test of
the discordant pairs, scipy ``binomtest``) and the counts fixed (A wrong, B right) / broken (A
right, B wrong).

A model can learn to stop early without learning to answer: "stopped" then rises while the
completions collapse into short non-answers. :func:`collapse_warnings` says so, in one line under
the table and in compare.json's ``warnings``, when B's first completions are on average under
half as long as A's with no significant accuracy or format gain, or more than 20% of them hold
no number at all; and when they are under half as long with a format gain but no significant gain
in accuracy (flexible): an answer line written without the working (a guess). The opposite
failure gets a line too: B stops before the token limit significantly less often than A (the
paired CI of "stopped" below 0), so its answers may be cut off, and a format gain comes with
unfinished completions.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from ..data import DataError
from ..labels import METRIC_LABELS, ci_text, pct, points_text
from ..runfiles import (
    COMPARE_JSON,
    COMPARE_JSONL,
    SAMPLES,
    SUMMARY,
    output_dir,
    provenance,
    read_jsonl,
    write_json,
    write_jsonl,
)
from ..stats import paired

METRICS = {
    "accuracy_strict": "correct_strict",
    "accuracy_flexible": "correct_flexible",
    "format": "format_ok",
}
OPTIONAL_METRICS = {  # in samples.jsonl of newer runs; compared when both runs have them
    "answer_line": "answer_line_ok",
    "stopped": "stopped",  # not truncated: derived in load_run
}


@dataclass
class CompareConfig:
    """Options of ``grpo-gsm8k compare``: run B against run A on their common questions."""

    positional: ClassVar[tuple[str, ...]] = ("run_a", "run_b")

    run_a: str = dataclasses.field(metadata={"help": "eval output folder (the baseline)"})
    run_b: str = dataclasses.field(metadata={"help": "eval output folder (the candidate)"})
    out: str | None = dataclasses.field(
        default=None, metadata={"help": "output folder (default: <RUN_B>/compare-<name of RUN_A>)"}
    )


def load_run(
    run: str, torn_tail: Literal["error", "skip"] = "error", notes: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """The samples.jsonl rows of an eval output folder, by id (``torn_tail`` and ``notes`` as in
    :func:`grpo_gsm8k.runfiles.read_jsonl`: ``skip`` reads an interrupted or live eval)."""
    path = Path(run) / SAMPLES
    if not Path(run).is_dir():
        raise DataError(f"{run}: no such eval folder")
    rows: dict[str, dict[str, Any]] = {}
    for lineno, row in read_jsonl(path, torn_tail=torn_tail, notes=notes):
        where = f"{path}:{lineno}"
        if "id" not in row:
            raise DataError(f"{where}: missing field 'id'")
        for field in ["completions", *METRICS.values()]:
            value = row.get(field)
            if not isinstance(value, list) or not value:
                raise DataError(f"{where}: field '{field}' must be a non-empty list")
        if isinstance(row.get("truncated"), list):
            row["stopped"] = [not t for t in row["truncated"]]
        rows[str(row["id"])] = row
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def run(config: CompareConfig) -> dict[str, Any]:
    """Write compare.json (all numbers) and compare.jsonl (the questions whose strict or flexible
    correctness differs, with both completions) to ``out`` (default ``<RUN_B>/compare-<A>``)."""
    run_a, run_b, out = config.run_a, config.run_b, config.out
    if Path(run_a).resolve() == Path(run_b).resolve():
        print(f"warning: RUN_A and RUN_B are the same run ({run_a}); every difference will be 0")
    summary, changed = pair_runs(run_a, run_b)
    for run in (run_a, run_b):
        if not (Path(run) / SUMMARY).is_file():
            print(f"warning: {run} has no summary.json (an unfinished eval?); comparing its rows")
    name_a = Path(run_a).resolve().name
    out_dir = Path(out) if out else Path(run_b) / f"compare-{name_a}"
    summary = {**summary, "out": str(out_dir), **provenance()}
    output_dir(out_dir)
    write_jsonl(out_dir / COMPARE_JSONL, changed)
    write_json(out_dir / COMPARE_JSON, summary)
    print_comparison(summary)
    return summary


def pair_runs(
    run_a: str, run_b: str, torn_tail: Literal["error", "skip"] = "error"
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The numbers of compare.json and the rows of compare.jsonl, without writing anything."""
    a, b = load_run(run_a, torn_tail), load_run(run_b, torn_tail)
    common = [i for i in a if i in b]
    if not common:
        raise DataError(f"{run_a} and {run_b} share no question ids")
    results = {}
    optional = {
        name: field
        for name, field in OPTIONAL_METRICS.items()
        if all(
            isinstance(run[i].get(field), list) and run[i][field] for run in (a, b) for i in common
        )
    }
    for name, field in {**METRICS, **optional}.items():
        results[name] = paired(
            [bool(a[i][field][0]) for i in common], [bool(b[i][field][0]) for i in common]
        ).to_dict()
    changed = []
    for i in common:
        flips = {
            m: ("fixed" if b[i][f][0] else "broken")
            for m, f in METRICS.items()
            if m != "format" and bool(a[i][f][0]) != bool(b[i][f][0])
        }
        if flips:
            changed.append(
                {
                    "id": i,
                    "question": b[i].get("question"),
                    "gold": b[i].get("gold"),
                    "change": flips,
                    "completion_a": a[i]["completions"][0],
                    "completion_b": b[i]["completions"][0],
                    "pred_flexible_a": a[i].get("pred_flexible", [None])[0],
                    "pred_flexible_b": b[i].get("pred_flexible", [None])[0],
                }
            )
    summary = {
        "run_a": str(run_a),
        "run_b": str(run_b),
        "n_common": len(common),
        "n_a": len(a),
        "n_b": len(b),
        "difference": "B - A",
        "ci_method": "Wilson (rates); Newcombe 1998 method 10 (paired difference)",
        "test": "exact McNemar (two-sided binomial test on discordant pairs)",
        "metrics": results,
    }
    summary["warnings"] = collapse_warnings(a, b, common, results)
    return summary, changed


COLLAPSE_TOKENS = 0.5  # B's mean completion tokens under half of A's ...
NO_NUMBER = 0.2  # ... or more than 20% of B's completions without a number
GAINS = ("accuracy_strict", "accuracy_flexible", "format", "answer_line")


def collapse_warnings(
    a: dict[str, dict[str, Any]],
    b: dict[str, dict[str, Any]],
    common: list[str],
    results: dict[str, dict[str, Any]],
) -> list[str]:
    """One line per sign that B's completions collapsed to short non-answers (first completions
    of the common questions): what a rise in "stopped" alone does not show; and one when B is
    truncated significantly more often than A."""
    warnings = []
    gains = {m for m in GAINS if m in results and results[m]["diff_ci"][0] > 0}
    tokens = [[_first_count(run[i].get("tokens")) for i in common] for run in (a, b)]
    if all(t is not None for ts in tokens for t in ts):
        mean_a, mean_b = (sum(t or 0.0 for t in ts) / len(ts) for ts in tokens)
        shorter = mean_b < COLLAPSE_TOKENS * mean_a
        if shorter and not gains:
            warnings.append(
                f"B's completions are {mean_b:.0f} tokens on average against A's {mean_a:.0f}, "
                "with no significant accuracy or format gain: B may stop early without "
                "answering, so 'stopped' is no win on its own"
            )
        elif shorter and "accuracy_flexible" not in gains:
            warnings.append(
                f"B's completions are {mean_b:.0f} tokens on average against A's {mean_a:.0f}, "
                "with no significant gain in accuracy (flexible): B may write the answer line "
                "without working the problem out, so its format gain is no win on its own"
            )
    stopped = results.get("stopped")
    if stopped and stopped["diff_ci"][1] < 0:
        warnings.append(
            f"B runs into the token limit more often than A (stopped {pct(stopped['rate_a'])} -> "
            f"{pct(stopped['rate_b'])}): its completions are cut off more, whatever else it gained"
        )
    empty = sum(not re.search(r"[0-9]", str(b[i]["completions"][0])) for i in common)
    if empty > NO_NUMBER * len(common):
        warnings.append(
            f"{empty} of B's {len(common)} completions ({pct(empty / len(common))}) hold no "
            "number: short non-answers, so 'stopped' is no win on its own"
        )
    return warnings


def _first_count(tokens: Any) -> float | None:
    """The first completion's token count of a row, None when the row does not record it."""
    if isinstance(tokens, list) and tokens and isinstance(tokens[0], int | float):
        return float(tokens[0])
    return None


def print_comparison(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"B = {summary['run_b']}  vs  A = {summary['run_a']}  (n={summary['n_common']})"
    )
    for col in [
        "metric",
        "A [95% CI]",
        "B [95% CI]",
        "B - A [95% CI]",
        "fixed",
        "broken",
        "McNemar p",
    ]:
        table.add_column(col, justify="left" if col == "metric" else "right")
    for name, r in summary["metrics"].items():
        table.add_row(
            METRIC_LABELS.get(name, name),
            f"{pct(r['rate_a'])} {ci_text(r['ci_a'])}",
            f"{pct(r['rate_b'])} {ci_text(r['ci_b'])}",
            points_text(r["diff"], r["diff_ci"]),
            str(r["fixed"]),
            str(r["broken"]),
            f"{r['mcnemar_p']:.3g}",
        )
    Console(width=max(Console().width, 132)).print(table)  # 7 columns: never wrap in a log
    for warning in summary.get("warnings", []):
        print(f"warning: {warning}")
    print(f"wrote {summary['out']}/{COMPARE_JSON} and {COMPARE_JSONL}")
