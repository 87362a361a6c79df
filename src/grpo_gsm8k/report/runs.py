"""Run folders as the report reads them: the kind of each RUN, its files (read through
:mod:`grpo_gsm8k.runfiles`, never written), checked field by field, and a label for it.

A run may be live: a torn last line of a JSONL log is skipped with a note, and the file is left
as it is. A field of the wrong type (or a NaN) in a file another tool wrote is a one-line error
naming the file and the field.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..runfiles import (
    COMPARE_JSON,
    COMPARE_JSONL,
    COMPLETIONS,
    METRICS,
    SAMPLES,
    SUMMARY,
    TRAIN_CONFIG,
    read_json,
    read_jsonl,
    sha256_file,
)


class ReportError(UserError):
    """A RUN that is not a run folder, a run file that cannot be read, or a bad setting."""


TRAIN_FILES = (TRAIN_CONFIG, METRICS, COMPLETIONS)
EVAL_FILES = (SUMMARY, SAMPLES)
PAIRED_FIELDS = ("rate_a", "rate_b", "ci_a", "ci_b", "diff", "diff_ci", "fixed", "broken")
GENERIC_DATA_NAMES = {"eval", "test", "train", "validation", "data", "samples"}


def detect_kind(run: Path) -> str:
    """``train``, ``eval`` or ``compare`` from the files in ``run``; ReportError otherwise."""
    if not run.is_dir():
        raise ReportError(f"{run}: no such folder")
    if (run / COMPARE_JSON).is_file():
        return "compare"
    if any((run / f).is_file() for f in EVAL_FILES):
        return "eval"
    if any((run / f).is_file() for f in TRAIN_FILES[:2]):
        return "train"
    raise ReportError(
        f"{run}: not a run folder (expected {TRAIN_CONFIG} or {METRICS} of a training run, "
        f"{SUMMARY} or {SAMPLES} of an eval, or {COMPARE_JSON})"
    )


def number(value: Any) -> float | None:
    """A finite int or float as float; None for anything else (bools, strings, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass
class Run:
    """One RUN argument: its kind, a short label and what was read from it."""

    path: Path
    kind: str
    label: str = ""
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def provenance(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "kind": self.kind,
            "path": str(self.path.resolve()),
            "files": [
                {
                    "name": f.name,
                    "bytes": f.stat().st_size,
                    "sha256": sha256_file(f),
                    "modified": time.strftime(
                        "%Y-%m-%dT%H:%M:%S%z", time.localtime(f.stat().st_mtime)
                    ),
                }
                for f in self.files
            ],
            "notes": self.notes,
        }


def rows_of(path: Path, notes: list[str]) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` of a JSONL log that a live run may be appending to (none if the
    file is not there yet)."""
    if not path.is_file():
        return []
    return list(read_jsonl(path, torn_tail="skip", notes=notes))


# ------------------------------------------------------------------------------------ training


def load_train(run: Run) -> None:
    """Series by metric key (step -> value; a later line for the same step wins), the total
    train_runtime of its sessions, the logged completions and the settings."""
    config_path = run.path / TRAIN_CONFIG
    config = read_json(config_path) if config_path.is_file() else {}
    if not config:
        run.notes.append(f"no {TRAIN_CONFIG} (settings unknown)")
    series: dict[str, dict[int, float]] = {}
    final: dict[str, Any] = {}
    metrics_path = run.path / METRICS
    for lineno, row in rows_of(metrics_path, run.notes):
        step = row.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            raise ReportError(f"{metrics_path}:{lineno}: field 'step' must be an integer")
        if "train_runtime" in row:  # the end of one training session (a resumed run has more)
            final = {
                "train_runtime": final.get("train_runtime", 0.0)
                + (number(row["train_runtime"]) or 0),
                "sessions": final.get("sessions", 0) + 1,
            }
            continue
        for key, value in row.items():
            value = number(value)
            if value is not None and key not in ("step", "epoch"):
                series.setdefault(key, {})[step] = value
    completions = []
    completions_path = run.path / COMPLETIONS
    for lineno, row in rows_of(completions_path, run.notes):
        where = f"{completions_path}:{lineno}"
        if not isinstance(row.get("completion"), str):
            raise ReportError(f"{where}: field 'completion' must be a string")
        if isinstance(row.get("step"), bool) or not isinstance(row.get("step"), int):
            raise ReportError(f"{where}: field 'step' must be an integer")
        if not isinstance(row.get("rewards", {}), dict):
            raise ReportError(f"{where}: field 'rewards' must be an object")
        completions.append(row)
    run.files += [p for p in (config_path, metrics_path, completions_path) if p.is_file()]
    if not series and not completions:
        raise ReportError(f"{run.path}: training run with no metrics and no completions yet")
    run.data = {"config": config, "series": series, "final": final, "completions": completions}


# ---------------------------------------------------------------------------------------- eval

# summary.json fields the report reads: name -> (required, the check, what it must be)
_RATE = "a number in [0, 1]"
_SUMMARY_FIELDS: dict[str, tuple[bool, str]] = {
    "n": (True, "a whole number >= 0"),
    "accuracy": (True, "an object of rates"),
    "accuracy.strict": (True, _RATE),
    "accuracy.flexible": (True, _RATE),
    "format_rate": (False, _RATE),
    "truncation_rate": (False, _RATE),
    "samples_per_question": (False, "a whole number >= 1"),
    "ci95": (False, "an object of intervals"),
    "pass@k": (False, "an object"),
    "maj@k": (False, "an object"),
    "decoding": (False, "an object"),
    "data": (False, "an object"),
    "mean_completion_tokens": (False, "a number"),
    "generated_tokens_per_s": (False, "a number"),
    "prompts_per_s": (False, "a number"),
}


def _non_finite(value: Any, where: str) -> str | None:
    """The dotted path of the first NaN or infinity in a JSON value, None if there is none."""
    if isinstance(value, float) and not math.isfinite(value):
        return where
    if not isinstance(value, dict | list):
        return None
    for key, item in value.items() if isinstance(value, dict) else enumerate(value):
        found = _non_finite(item, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def _valid(value: Any, kind: str) -> bool:
    if kind == _RATE:
        return number(value) is not None and 0 <= value <= 1
    if kind.startswith("a whole number"):
        low = 1 if kind.endswith("1") else 0
        return isinstance(value, int) and not isinstance(value, bool) and value >= low
    if kind == "a number":
        return value is None or number(value) is not None
    return isinstance(value, dict)


def check_summary(path: Path, summary: dict[str, Any]) -> None:
    """A summary.json another tool wrote, or a damaged one: ReportError naming the file and the
    first field that is missing, NaN or of the wrong type."""
    bad = _non_finite(summary, "")
    if bad:
        raise ReportError(f"{path}: field '{bad}' is not a finite number (NaN or infinity)")
    for name, (required, kind) in _SUMMARY_FIELDS.items():
        parent, _, leaf = name.rpartition(".")
        holder = summary.get(parent) if parent else summary
        if not isinstance(holder, dict) or leaf not in holder:
            if required:
                raise ReportError(f"{path}: missing field '{name}' (not a grpo-gsm8k eval?)")
            continue
        if not _valid(holder[leaf], kind):
            raise ReportError(f"{path}: field '{name}' must be {kind}, got {holder[leaf]!r:.40}")
    for mode, pair in (summary.get("ci95") or {}).items():
        if not (isinstance(pair, list) and len(pair) == 2 and all(_valid(x, _RATE) for x in pair)):
            raise ReportError(f"{path}: field 'ci95.{mode}' must be a pair of rates")


def dataset_name(summary: dict[str, Any]) -> str | None:
    """What the eval ran on, for labels: the data file's stem, or its folder's name when the
    stem says nothing (``data/gsm-symbolic/eval.jsonl`` -> ``gsm-symbolic``)."""
    data = summary.get("data")
    path = data.get("path") if isinstance(data, dict) else None
    if not isinstance(path, str) or not path:
        return None
    p = Path(path)
    return (p.parent.name or p.stem) if p.stem.lower() in GENERIC_DATA_NAMES else p.stem


def data_key(summary: dict[str, Any]) -> str | None:
    """What tells data sets apart: the data file's sha256 (its path if no hash), None if
    unknown."""
    data = summary.get("data")
    if not isinstance(data, dict):
        return None
    key = data.get("sha256") or data.get("path")
    return str(key) if key else None


def load_eval(run: Run) -> None:
    """samples.jsonl (validated by :func:`grpo_gsm8k.evaluation.compare.load_run`; a torn last
    line is an interrupted eval, noted with how to finish it) and summary.json (checked field by
    field); an unfinished eval (no summary yet) is summarized from its samples."""
    from ..evaluation.compare import load_run
    from ..evaluation.summary import summarize

    samples = run.path / SAMPLES
    torn: list[str] = []
    rows = load_run(str(run.path), torn_tail="skip", notes=torn)
    for note in torn:
        run.notes.append(
            f"{note}: the eval was interrupted; rerun the same `grpo-gsm8k eval ... --out "
            f"{run.path}` to resume"
        )
    summary_path = run.path / SUMMARY
    if summary_path.is_file():
        summary = read_json(summary_path)
        check_summary(summary_path, summary)
        run.files.append(summary_path)
    else:
        for key, row in rows.items():
            for name in ("tokens", "truncated"):
                if not isinstance(row.get(name), list):
                    raise ReportError(f"{samples}: question {key}: field '{name}' must be a list")
        summary = summarize(list(rows.values()))
        run.notes.append(f"no {SUMMARY} yet: numbers computed from {SAMPLES}")
    run.files.append(samples)
    run.data = {
        "summary": summary,
        "rows": rows,
        "dataset": dataset_name(summary),
        "data_key": data_key(summary),
    }


# ------------------------------------------------------------------------------------- compare


def load_compare(run: Run) -> None:
    """compare.json (the paired numbers) and compare.jsonl (the questions that changed)."""
    path = run.path / COMPARE_JSON
    summary = read_json(path)
    metrics = summary.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ReportError(f"{path}: field 'metrics' must be a non-empty object")
    for name, values in metrics.items():
        missing = [f for f in (*PAIRED_FIELDS, "mcnemar_p") if f not in (values or {})]
        if missing:
            raise ReportError(f"{path}: metrics.{name} lacks field '{missing[0]}'")
    run.files.append(path)
    changed_path = run.path / COMPARE_JSONL
    changed = []
    for lineno, row in rows_of(changed_path, run.notes):
        for name in ("completion_a", "completion_b"):
            if not isinstance(row.get(name), str):
                raise ReportError(f"{changed_path}:{lineno}: field '{name}' must be a string")
        if not isinstance(row.get("change"), dict):
            raise ReportError(f"{changed_path}:{lineno}: field 'change' must be an object")
        changed.append(row)
    if changed_path.is_file():
        run.files.append(changed_path)
    run.data = {"summary": summary, "changed": changed}


# ------------------------------------------------------------------------------------- all runs


def load_runs(paths: Sequence[str]) -> list[Run]:
    """Each RUN with its kind and a label unique among them (the folder name, or more of its
    path where names repeat)."""
    runs = [Run(Path(p), detect_kind(Path(p))) for p in paths]
    parts = [r.path.resolve().parts for r in runs]
    for i, p in enumerate(parts):
        if p in parts[:i]:
            raise ReportError(f"{paths[i]}: given twice")
    labels = ["/".join(p[-1:]) for p in parts]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            break
    for run, label in zip(runs, labels, strict=True):
        run.label = label
        {"train": load_train, "eval": load_eval, "compare": load_compare}[run.kind](run)
    return runs
