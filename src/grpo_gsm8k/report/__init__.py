"""``grpo-gsm8k report RUN [RUN ...]``: an offline HTML report of training, eval and compare runs.

It reads run files only (never a model). The kind of each RUN comes from its files:

- a training output dir: ``grpo_gsm8k_config.json``, ``metrics.jsonl``, ``completions.jsonl``;
- an eval dir: ``summary.json``, ``samples.jsonl``;
- a compare dir: ``compare.json``, ``compare.jsonl``.

Several runs of a kind share each figure's axes (one colour per run). Training: total and per
reward, held-out accuracy and format rate, completion length, clipped ratio, entropy, grad norm,
learning rate, step time, raw and smoothed (a debiased EMA) against step. Eval: every metric with
its 95% interval, pass@k / maj@k when sampled, tokens/s. Pairs: each compare dir, and every eval
run after the first against the first
(:func:`grpo_gsm8k.evaluation.compare.pair_runs`). The reward-hacking watch
(:mod:`grpo_gsm8k.reward_hacking`) runs over the training completions step by step and over each
eval's completions.

The output folder gets ``report.html`` (inline CSS, figures embedded as ``data:`` PNGs, no
external URL), the PNGs beside it and ``report.json`` (the numbers plotted and the sha256 of every
input file). Each file is written to a temp file and renamed.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .. import __version__, runfiles
from ..errors import UserError
from ..reward_hacking import FLAGS, completion_flags, flag_rates
from ..runfiles import output_dir, read_json, sha256_file
from ..stats import wilson

# ------------------------------------------------------------------------------------- settings


@dataclass
class ReportConfig:
    """Options of ``grpo-gsm8k report RUN [RUN ...]``: an HTML report (report.html, its PNGs and
    report.json) of training output dirs, eval dirs and compare dirs, from their files alone."""

    positional: ClassVar[tuple[str, ...]] = ("runs",)

    runs: list[str] = field(
        default_factory=list,
        metadata={
            "help": "training output dirs, eval dirs and/or compare dirs; runs of a kind share "
            "each figure's axes"
        },
    )
    out: str | None = field(
        default=None,
        metadata={
            "help": "output folder (default: <RUN>/report for one run, <common parent>/report "
            "for several)"
        },
    )
    smoothing: float = field(
        default=0.6,
        metadata={"help": "EMA weight of the smoothed training curves, in [0, 1); 0 = raw"},
    )
    samples_per_stage: int = field(
        default=3,
        metadata={"help": "sample completions shown per training stage (early/middle/late)"},
    )
    max_changed: int = field(
        default=20,
        metadata={"help": "questions that changed shown per paired comparison (all in json)"},
    )


class ReportError(UserError):
    """A RUN that is not a run folder, a run file that cannot be read, or a bad setting."""


# --------------------------------------------------------------------------------- run files

TRAIN_FILES = ("grpo_gsm8k_config.json", "metrics.jsonl", "completions.jsonl")
EVAL_FILES = ("summary.json", "samples.jsonl")
COMPARE_FILES = ("compare.json", "compare.jsonl")


def detect_kind(run: Path) -> str:
    """``train``, ``eval`` or ``compare`` from the files in ``run``; ReportError otherwise."""
    if not run.is_dir():
        raise ReportError(f"{run}: no such folder")
    if (run / "compare.json").is_file():
        return "compare"
    if any((run / f).is_file() for f in EVAL_FILES):
        return "eval"
    if any((run / f).is_file() for f in TRAIN_FILES[:2]):
        return "train"
    raise ReportError(
        f"{run}: not a run folder (expected grpo_gsm8k_config.json or metrics.jsonl of a "
        "training run, summary.json or samples.jsonl of an eval, or compare.json)"
    )


def read_rows(path: Path, notes: list[str]) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` of a JSONL file that a live run may be appending to: a torn last
    line (no newline yet) is skipped with a note, and the file is left as it is (the report only
    reads); any other bad line is an error naming the file and line."""
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if lineno == len(lines):  # the last line has no newline: still being written
                notes.append(f"{path.name}: skipped the unfinished line {lineno}")
                break
            raise ReportError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise ReportError(f"{path}:{lineno}: expected a JSON object")
        rows.append((lineno, row))
    return rows


def _number(value: Any) -> float | None:
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


def load_train(run: Run) -> None:
    """Series by metric key (step -> value; a later line for the same step wins), the total
    train_runtime of its sessions, the logged completions and the settings."""
    config_path = run.path / "grpo_gsm8k_config.json"
    config = read_json(config_path) if config_path.is_file() else {}
    if not config:
        run.notes.append("no grpo_gsm8k_config.json (settings unknown)")
    series: dict[str, dict[int, float]] = {}
    final: dict[str, Any] = {}
    metrics_path = run.path / "metrics.jsonl"
    for lineno, row in read_rows(metrics_path, run.notes):
        step = row.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            raise ReportError(f"{metrics_path}:{lineno}: field 'step' must be an integer")
        if "train_runtime" in row:  # the end of one training session (a resumed run has more)
            final = {
                "train_runtime": final.get("train_runtime", 0.0)
                + (_number(row["train_runtime"]) or 0),
                "sessions": final.get("sessions", 0) + 1,
            }
            continue
        for key, value in row.items():
            number = _number(value)
            if number is not None and key not in ("step", "epoch"):
                series.setdefault(key, {})[step] = number
    completions = []
    completions_path = run.path / "completions.jsonl"
    for lineno, row in read_rows(completions_path, run.notes):
        where = f"{completions_path}:{lineno}"
        if not isinstance(row.get("completion"), str):
            raise ReportError(f"{where}: field 'completion' must be a string")
        if isinstance(row.get("step"), bool) or not isinstance(row.get("step"), int):
            raise ReportError(f"{where}: field 'step' must be an integer")
        if not isinstance(row.get("rewards", {}), dict):
            raise ReportError(f"{where}: field 'rewards' must be an object")
        completions.append(row)
    for path in (config_path, metrics_path, completions_path):
        if path.is_file():
            run.files.append(path)
    if not series and not completions:
        raise ReportError(f"{run.path}: training run with no metrics and no completions yet")
    run.data = {"config": config, "series": series, "final": final, "completions": completions}


def load_eval(run: Run) -> None:
    """samples.jsonl (validated by :func:`grpo_gsm8k.evaluation.compare.load_run`) and
    summary.json; an unfinished eval (no summary yet) is summarized from its samples."""
    from ..evaluation.compare import load_run
    from ..evaluation.evaluate import summarize

    rows = load_run(str(run.path))
    summary_path = run.path / "summary.json"
    if summary_path.is_file():
        summary = read_json(summary_path)
        run.files.append(summary_path)
    else:
        summary = summarize(list(rows.values()))
        run.notes.append("no summary.json yet: numbers computed from samples.jsonl")
    run.files.append(run.path / "samples.jsonl")
    run.data = {"summary": summary, "rows": rows}


PAIRED_FIELDS = ("rate_a", "rate_b", "ci_a", "ci_b", "diff", "diff_ci", "fixed", "broken")


def load_compare(run: Run) -> None:
    """compare.json (the paired numbers) and compare.jsonl (the questions that changed)."""
    path = run.path / "compare.json"
    summary = read_json(path)
    metrics = summary.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ReportError(f"{path}: field 'metrics' must be a non-empty object")
    for name, values in metrics.items():
        missing = [f for f in (*PAIRED_FIELDS, "mcnemar_p") if f not in (values or {})]
        if missing:
            raise ReportError(f"{path}: metrics.{name} lacks field '{missing[0]}'")
    run.files.append(path)
    changed_path = run.path / "compare.jsonl"
    changed = []
    for lineno, row in read_rows(changed_path, run.notes):
        for name in ("completion_a", "completion_b"):
            if not isinstance(row.get(name), str):
                raise ReportError(f"{changed_path}:{lineno}: field '{name}' must be a string")
        if not isinstance(row.get("change"), dict):
            raise ReportError(f"{changed_path}:{lineno}: field 'change' must be an object")
        changed.append(row)
    if changed_path.is_file():
        run.files.append(changed_path)
    run.data = {"summary": summary, "changed": changed}


def load_runs(paths: Sequence[str]) -> list[Run]:
    """Each RUN with its kind and a label unique among them (the folder name, or more of its
    path where names repeat)."""
    runs = [Run(Path(p), detect_kind(Path(p))) for p in paths]
    parts = [r.path.resolve().parts for r in runs]
    for i, p in enumerate(parts):
        if p in parts[:i]:
            raise ReportError(f"{paths[i]}: given twice")
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            break
    for run, label in zip(runs, labels, strict=True):
        run.label = label
        {"train": load_train, "eval": load_eval, "compare": load_compare}[run.kind](run)
    return runs


# ----------------------------------------------------------------------------------- numbers


def ema(values: Sequence[float], weight: float) -> list[float]:
    """Exponential moving average with bias correction (as TensorBoard's smoothing): the first
    point is the first value; ``weight`` 0 returns the values."""
    out, acc = [], 0.0
    for i, v in enumerate(values, 1):
        acc = weight * acc + (1 - weight) * v
        out.append(acc / (1 - weight**i))
    return out


@dataclass(frozen=True)
class Metric:
    """A training metric: its metrics.jsonl key, figure title, y label, and how to draw it."""

    key: str
    title: str
    ylabel: str
    percent: bool = False
    smooth: bool = True
    about: str = ""


TRAIN_METRICS = [
    Metric(
        "reward",
        "Total reward per step",
        "reward (weighted sum, mean)",
        about="Mean over the step's completions of the weighted sum of the rewards.",
    ),
    Metric(
        "reward_std",
        "Reward spread within the batch",
        "standard deviation of reward",
        about="Standard deviation of the total reward over the step's completions.",
    ),
    Metric(
        "frac_reward_zero_std",
        "Groups without learning signal",
        "groups with zero reward spread (%)",
        percent=True,
        about="Share of prompt groups whose completions all got the same reward: their "
        "advantages are 0, so they teach nothing.",
    ),
    Metric(
        "completions/mean_length",
        "Completion length",
        "mean completion length (tokens)",
    ),
    Metric(
        "completions/clipped_ratio",
        "Truncated completions",
        "completions hitting the token limit (%)",
        percent=True,
        about="Share of completions that stopped at max_completion_length (no end of text).",
    ),
    Metric("entropy", "Policy entropy", "mean token entropy (nats)"),
    Metric(
        "grad_norm",
        "Gradient norm",
        "global L2 norm (before clipping)",
    ),
    Metric("learning_rate", "Learning rate", "learning rate", smooth=False),
    Metric("step_time", "Step time", "wall time per step (s)"),
]
HELD_OUT = {
    "eval/accuracy_strict": "accuracy, strict",
    "eval/accuracy_flexible": "accuracy, flexible",
    "eval/format_rate": "format (#### N line)",
}


def reward_names(runs: Iterable[Run]) -> list[str]:
    names: list[str] = []
    for run in runs:
        for key in run.data["series"]:
            if key.startswith("rewards/") and key.endswith("/mean"):
                name = key[len("rewards/") : -len("/mean")]
                if name not in names:
                    names.append(name)
    return names


def series_points(run: Run, key: str, weight: float | None) -> dict[str, list[Any]] | None:
    """``{"step": [...], "value": [...], "ema": [...]}`` of a training metric, None if absent."""
    points = run.data["series"].get(key)
    if not points:
        return None
    steps = sorted(points)
    values = [points[s] for s in steps]
    out: dict[str, list[Any]] = {"step": steps, "value": values}
    if weight is not None:
        out["ema"] = ema(values, weight)
    return out


def held_out_points(run: Run) -> dict[str, Any]:
    """The in-training eval per step with Wilson 95% intervals on eval/n questions."""
    n_by_step = run.data["series"].get("eval/n", {})
    out: dict[str, Any] = {}
    for key in HELD_OUT:
        points = run.data["series"].get(key)
        if not points:
            continue
        steps = sorted(points)
        cis = [
            list(wilson(points[s] * n_by_step.get(s, 0), int(n_by_step.get(s, 0)))) for s in steps
        ]
        out[key] = {
            "step": steps,
            "value": [points[s] for s in steps],
            "n": [int(n_by_step.get(s, 0)) for s in steps],
            "ci95": cis,
        }
    return out


def train_flags(run: Run) -> list[dict[str, bool | None]]:
    limit = (run.data["config"].get("grpo_config") or {}).get("max_completion_length")
    flags = []
    for row in run.data["completions"]:
        tokens = row.get("tokens")
        hit = tokens >= limit if isinstance(tokens, int) and isinstance(limit, int) else None
        flags.append(completion_flags(row["completion"], hit))
    return flags


def train_watch(run: Run) -> dict[str, Any]:
    """Hacking-watch shares per step over completions.jsonl, and over all of it."""
    flags = train_flags(run)
    by_step: dict[int, list[dict[str, bool | None]]] = {}
    for row, f in zip(run.data["completions"], flags, strict=True):
        by_step.setdefault(row["step"], []).append(f)
    steps = sorted(by_step)
    per_step = [flag_rates(by_step[s]) for s in steps]
    return {
        "step": steps,
        "n": [len(by_step[s]) for s in steps],
        "rates": {name: [r[name] for r in per_step] for name in FLAGS},
        "overall": flag_rates(flags),
        "n_total": len(flags),
    }


def eval_flags(run: Run) -> list[dict[str, bool | None]]:
    flags = []
    for row in run.data["rows"].values():
        truncated = row.get("truncated") or [None] * len(row["completions"])
        for text, cut in zip(row["completions"], truncated, strict=False):
            flags.append(completion_flags(text, None if cut is None else bool(cut)))
    return flags


def eval_metrics(run: Run) -> dict[str, Any]:
    """The eval's rates with Wilson 95% intervals (truncation's computed here the way eval
    computes the others: on the n questions), pass@k / maj@k and speed."""
    s = run.data["summary"]
    n = int(s.get("n") or len(run.data["rows"]))
    acc = s.get("accuracy") or {}
    ci = s.get("ci95") or {}
    rates: dict[str, dict[str, Any]] = {}
    for mode in ("strict", "flexible"):
        if mode in acc:
            rates[f"accuracy_{mode}"] = {
                "value": acc[mode],
                "ci95": ci.get(mode) or list(wilson(acc[mode] * n, n)),
            }
    if "format_rate" in s:
        rates["format"] = {
            "value": s["format_rate"],
            "ci95": s.get("format_ci95") or list(wilson(s["format_rate"] * n, n)),
        }
    if "truncation_rate" in s:
        rates["truncated"] = {
            "value": s["truncation_rate"],
            "ci95": list(wilson(s["truncation_rate"] * n, n)),
        }
    return {
        "n": n,
        "samples_per_question": s.get("samples_per_question", 1),
        "rates": rates,
        "pass@k": s.get("pass@k"),
        "maj@k": s.get("maj@k"),
        "mean_completion_tokens": s.get("mean_completion_tokens"),
        "generated_tokens_per_s": s.get("generated_tokens_per_s"),
        "prompts_per_s": s.get("prompts_per_s"),
        "backend": s.get("backend"),
        "model": s.get("model"),
        "decoding": s.get("decoding"),
        "prompt_style": s.get("prompt_style"),
    }


def pairs(runs: list[Run]) -> list[dict[str, Any]]:
    """Every compare dir, then every eval run after the first paired with the first (unless a
    compare dir already holds that pair). Runs with no common question are noted, not paired."""
    from ..evaluation.compare import pair_runs

    out = []
    done = set()
    names = {str(r.path.resolve()): r.label for r in runs if r.kind == "eval"}
    for run in runs:
        if run.kind == "compare":
            s = run.data["summary"]
            key = (_resolved(s.get("run_a")), _resolved(s.get("run_b")))
            done.add(key)
            out.append(
                {
                    "source": run.label,
                    "a": names.get(key[0] or "") or Path(str(s.get("run_a"))).name,
                    "b": names.get(key[1] or "") or Path(str(s.get("run_b"))).name,
                    "summary": s,
                    "changed": run.data["changed"],
                }
            )
    evals = [r for r in runs if r.kind == "eval"]
    for b in evals[1:]:
        a = evals[0]
        if (_resolved(str(a.path)), _resolved(str(b.path))) in done:
            continue
        try:
            summary, changed = pair_runs(str(a.path), str(b.path))
        except UserError as e:
            b.notes.append(f"not paired with {a.label}: {e}")
            continue
        out.append(
            {
                "source": "computed",
                "a": a.label,
                "b": b.label,
                "summary": summary,
                "changed": changed,
            }
        )
    return out


def _resolved(path: Any) -> str | None:
    return str(Path(path).resolve()) if isinstance(path, str) else None


# ----------------------------------------------------------------------------------- figures

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
STYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v"]
WIDTH, HEIGHT, DPI = 6.4, 3.7, 130


@dataclass
class Figure:
    """A rendered figure: file name, title, caption and PNG bytes."""

    name: str
    title: str
    caption: str
    png: bytes
    section: str


def _new_axes(title: str, xlabel: str, ylabel: str, height: float = HEIGHT) -> tuple[Any, Any]:
    """A figure with one axes (Agg canvas, no pyplot state), titled and labelled."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=11, loc="left", fontweight="bold")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig, ax


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _percent_axis(ax: Any, lower: float = 0.0, upper: float = 1.0) -> None:
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylim(lower - 0.03, upper + 0.03)


def _integer_steps(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _legend(ax: Any) -> None:
    """Inside the axes for up to 3 entries; more go below it, in two columns, off the data."""
    entries = len(ax.get_legend_handles_labels()[0])
    if entries > 3:
        ax.legend(fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    elif entries:
        ax.legend(fontsize=8, frameon=False, loc="best")


def step_figure(metric: Metric, runs: list[Run], weight: float) -> tuple[Any, dict[str, Any]]:
    """One training metric against step: each run's raw points (thin) and EMA (thick)."""
    fig, ax = _new_axes(metric.title, "training step", metric.ylabel)
    data = {}
    for i, run in enumerate(runs):
        points = series_points(run, metric.key, weight if metric.smooth else None)
        if points is None:
            continue
        data[run.label] = points
        color = COLORS[i % len(COLORS)]
        raw_label = f"{run.label} (raw)" if metric.smooth else run.label
        ax.plot(
            points["step"],
            points["value"],
            color=color,
            alpha=0.35 if metric.smooth else 1.0,
            linewidth=1,
            marker="o",
            markersize=3,
            label=raw_label,
        )
        if metric.smooth:
            ax.plot(
                points["step"],
                points["ema"],
                color=color,
                linewidth=2.2,
                label=f"{run.label} (EMA {weight:g})",
            )
    if metric.percent:
        _percent_axis(ax)
    if metric.key == "learning_rate":
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    _integer_steps(ax)
    _legend(ax)
    return fig, data


def _styled(i_run: int, i_metric: int, n_runs: int) -> dict[str, Any]:
    """Colour by metric for one run; colour by run and line style/marker by metric for several."""
    if n_runs == 1:
        return {"color": COLORS[i_metric % len(COLORS)], "marker": MARKERS[i_metric % 5]}
    return {
        "color": COLORS[i_run % len(COLORS)],
        "linestyle": STYLES[i_metric % len(STYLES)],
        "marker": MARKERS[i_metric % 5],
    }


def held_out_figure(runs: list[Run]) -> tuple[Any, dict[str, Any]]:
    data = {r.label: held_out_points(r) for r in runs}
    shown = [r for r in runs if data[r.label]]
    sizes = {n for d in data.values() for p in d.values() for n in p["n"]}
    fig, ax = _new_axes(
        "Held-out eval during training (greedy"
        + (f", n={sizes.pop()})" if len(sizes) == 1 else ")"),
        "training step",
        "held-out questions (%)",
        height=HEIGHT if len(shown) < 2 else 1.3 * HEIGHT,
    )
    steps = [s for d in data.values() for p in d.values() for s in p["step"]] or [0]
    nudge = 0.012 * max(max(steps) - min(steps), 1)  # keeps the error bars of one step apart
    for i, run in enumerate(shown):
        for j, (key, name) in enumerate(HELD_OUT.items()):
            p = data[run.label].get(key)
            if not p:
                continue
            lower = [max(0.0, v - c[0]) for v, c in zip(p["value"], p["ci95"], strict=True)]
            upper = [max(0.0, c[1] - v) for v, c in zip(p["value"], p["ci95"], strict=True)]
            offset = (j - 1) * nudge + (i - (len(shown) - 1) / 2) * 3 * nudge
            ax.errorbar(
                [s + offset for s in p["step"]],
                p["value"],
                yerr=[lower, upper],
                capsize=2.5,
                markersize=4,
                linewidth=1.6,
                elinewidth=0.8,
                label=name if len(shown) == 1 else f"{run.label}: {name}",
                **_styled(i, j, len(shown)),
            )
    _percent_axis(ax)
    _integer_steps(ax)
    _legend(ax)
    return fig, data


def train_watch_figure(runs: list[Run], watches: dict[str, Any]) -> Any:
    fig, ax = _new_axes(
        "Reward-hacking watch over training",
        "training step",
        "logged completions (%)",
        height=1.3 * HEIGHT,  # room for the legend below
    )
    shown = [r for r in runs if watches[r.label]["step"]]
    for i, run in enumerate(shown):
        w = watches[run.label]
        for j, (name, label) in enumerate(FLAGS.items()):
            values = w["rates"][name]
            if all(v is None for v in values):
                continue
            ax.plot(
                w["step"],
                [math.nan if v is None else v for v in values],
                linewidth=1.5,
                markersize=4,
                alpha=0.9,
                label=label if len(shown) == 1 else f"{run.label}: {label}",
                **_styled(i, j, len(shown)),
            )
    _percent_axis(ax)
    _integer_steps(ax)
    _legend(ax)
    return fig


def _grouped_positions(n_groups: int, n_bars: int) -> tuple[list[float], float]:
    width = 0.8 / max(n_bars, 1)
    return [(k - (n_bars - 1) / 2) * width for k in range(n_bars)], width


def eval_metrics_figure(runs: list[Run], metrics: dict[str, Any]) -> Any:
    names = {
        "accuracy_strict": "accuracy\nstrict",
        "accuracy_flexible": "accuracy\nflexible",
        "format": "format\n(#### N)",
        "truncated": "truncated",
    }
    fig, ax = _new_axes("Eval metrics with 95% intervals", "", "questions (%)")
    offsets, _ = _grouped_positions(len(names), len(runs))
    for i, run in enumerate(runs):
        rates = metrics[run.label]["rates"]
        xs, ys, lo, hi = [], [], [], []
        for x, key in enumerate(names):
            if key in rates:
                v, (a, b) = rates[key]["value"], rates[key]["ci95"]
                xs.append(x + offsets[i])
                ys.append(v)
                lo.append(max(0.0, v - a))  # a rate of 0 may sit a rounding error below its CI
                hi.append(max(0.0, b - v))
        ax.errorbar(
            xs,
            ys,
            yerr=[lo, hi],
            fmt="o",
            capsize=4,
            markersize=6,
            color=COLORS[i % len(COLORS)],
            label=f"{run.label} (n={metrics[run.label]['n']})",
        )
    ax.set_xticks(range(len(names)), list(names.values()))
    ax.set_xlim(-0.6, len(names) - 0.4)
    _percent_axis(ax)
    _legend(ax)
    return fig


def pass_k_figure(runs: list[Run], metrics: dict[str, Any]) -> Any | None:
    shown = [r for r in runs if metrics[r.label]["pass@k"]]
    if not shown:
        return None
    fig, ax = _new_axes("pass@k and maj@k (sampled)", "k (samples per question)", "questions (%)")
    ks_all: set[int] = set()
    for i, run in enumerate(shown):
        m = metrics[run.label]
        curves = {
            "pass@k strict": {int(k[5:]): v["strict"] for k, v in m["pass@k"].items()},
            "pass@k flexible": {int(k[5:]): v["flexible"] for k, v in m["pass@k"].items()},
            "maj@k flexible": {int(k[4:]): v for k, v in (m["maj@k"] or {}).items()},
        }
        for j, (name, curve) in enumerate(curves.items()):
            ks = sorted(curve)
            ks_all.update(ks)
            ax.plot(
                ks,
                [curve[k] for k in ks],
                linewidth=1.6,
                label=name if len(shown) == 1 else f"{run.label}: {name}",
                **_styled(i, j, len(shown)),
            )
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(ks_all), [str(k) for k in sorted(ks_all)])
    ax.minorticks_off()
    _percent_axis(ax)
    _legend(ax)
    return fig


def speed_figure(runs: list[Run], metrics: dict[str, Any]) -> Any | None:
    shown = [r for r in runs if metrics[r.label]["generated_tokens_per_s"]]
    if not shown:
        return None
    fig, ax = _new_axes("Generation throughput", "generated tokens per second", "")
    ax.grid(False, axis="y")
    values = [metrics[r.label]["generated_tokens_per_s"] for r in shown]
    labels = [f"{r.label}\n({metrics[r.label]['backend']})" for r in shown]
    colors = [COLORS[runs.index(r) % len(COLORS)] for r in shown]
    bars = ax.barh(range(len(shown)), values, color=colors, height=0.6)
    ax.bar_label(bars, [f"{v:.1f}" for v in values], padding=3, fontsize=9)
    ax.set_yticks(range(len(shown)), labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, max(values) * 1.18)
    return fig


def eval_watch_figure(runs: list[Run], watches: dict[str, Any]) -> Any:
    fig, ax = _new_axes("Reward-hacking watch, eval completions", "", "completions (%)")
    offsets, width = _grouped_positions(len(FLAGS), len(runs))
    for i, run in enumerate(runs):
        rates = watches[run.label]["overall"]
        xs = [x + offsets[i] for x in range(len(FLAGS))]
        ys = [rates[name] or 0.0 for name in FLAGS]
        ax.bar(xs, ys, width=width * 0.92, color=COLORS[i % len(COLORS)], label=run.label)
    short = ["> 1 '####'\nline", "text after\n'####' line", "token\nlimit", "repeated\nline"]
    ax.set_xticks(range(len(FLAGS)), [*short, "strict ≠\nflexible"], fontsize=8)
    _percent_axis(ax)
    ax.set_ylim(0, 1.03)
    _legend(ax)
    return fig


def paired_figure(pair: dict[str, Any]) -> Any:
    """Forest plot: B - A with Newcombe's 95% interval per metric, McNemar p and counts."""
    s = pair["summary"]
    names = {
        "accuracy_strict": "accuracy strict",
        "accuracy_flexible": "accuracy flexible",
        "format": "format (#### N)",
        "answer_line": "one final #### N line",
        "stopped": "stopped (not truncated)",
    }
    keys = [k for k in names if k in s["metrics"]]
    fig, ax = _new_axes(
        f"{_short(pair['b'])} − {_short(pair['a'])}, paired (n={s.get('n_common')})",
        "difference B − A (percentage points)",
        "",
        height=0.75 * HEIGHT,
    )
    ax.grid(False, axis="y")
    for y, key in enumerate(keys):
        r = s["metrics"][key]
        d, (lo, hi) = 100 * r["diff"], r["diff_ci"]
        color = "#2ca02c" if lo > 0 else "#d62728" if hi < 0 else "#555555"
        ax.errorbar(
            [d],
            [y],
            xerr=[[max(0.0, d - 100 * lo)], [max(0.0, 100 * hi - d)]],
            fmt="o",
            color=color,
            capsize=5,
        )
        ax.annotate(
            f"{d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]  p={r['mcnemar_p']:.2g}  "
            f"+{r['fixed']}/−{r['broken']}",
            (d, y),
            xytext=(0, 9),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    ax.axvline(0, color="#888888", linewidth=1)
    ax.set_yticks(range(len(keys)), [names[k] for k in keys])
    ax.set_ylim(-0.6, len(keys) - 0.3)
    ax.invert_yaxis()
    ax.set_xlim(-105, 105)
    return fig


def _short(label: Any, width: int = 24) -> str:
    text = str(label)
    return text if len(text) <= width else "…" + text[-(width - 1) :]


# -------------------------------------------------------------------------------------- html

CSS = """
:root { --fg: #1d1d1f; --muted: #5f6368; --line: #d9dce1; --bg: #ffffff; --soft: #f5f6f8;
  --good: #1e7d32; --bad: #b3261e; --accent: #1f5fbf; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: var(--bg); line-height: 1.45;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 16px clamp(10px, 3vw, 28px) 48px; }
header { border-bottom: 3px solid var(--accent); margin-bottom: 8px; }
h1 { font-size: 1.6rem; margin: 8px 0 2px; }
h2 { font-size: 1.3rem; margin: 34px 0 8px; padding-bottom: 4px; border-bottom: 1px solid
  var(--line); }
h3 { font-size: 1.05rem; margin: 22px 0 6px; }
p, li { max-width: 80ch; }
.muted { color: var(--muted); font-size: 0.9rem; }
nav { display: flex; flex-wrap: wrap; gap: 6px 14px; margin: 10px 0 4px; font-size: 0.95rem; }
nav a { color: var(--accent); text-decoration: none; }
.grid { display: grid; gap: 14px;
  grid-template-columns: repeat(auto-fill, minmax(min(100%, 460px), 1fr)); }
figure { margin: 0; padding: 8px; border: 1px solid var(--line); border-radius: 8px;
  background: var(--bg); }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { font-size: 0.85rem; color: var(--muted); margin-top: 4px; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 6px 0 10px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 9px; text-align: right;
  vertical-align: top; white-space: nowrap; }
th { background: var(--soft); font-weight: 600; }
table.text th, table.text td { text-align: left; }
th:first-child, td:first-child { text-align: left; white-space: normal; min-width: 14ch; }
.path { display: inline-block; white-space: normal; max-width: 40ch; overflow-wrap: anywhere; }
.good { color: var(--good); font-weight: 600; } .bad { color: var(--bad); font-weight: 600; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; margin: 6px 0 18px; }
.pair > div { min-width: 0; }
@media (max-width: 720px) { .pair { grid-template-columns: 1fr; } body { font-size: 14px; }
  th, td { white-space: normal; padding: 4px 6px; } }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: var(--soft); margin: 4px 0;
  padding: 8px 10px; border-radius: 6px; font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo,
  Consolas, monospace; max-height: 22em; overflow-y: auto; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; margin: 10px 0;
  min-width: 0; }
.cards { display: grid; gap: 0 12px;
  grid-template-columns: repeat(auto-fill, minmax(min(100%, 340px), 1fr)); }
h4 { font-size: 0.98rem; margin: 16px 0 0; }
.card .q { font-size: 0.9rem; margin: 2px 0 6px; }
.badge { display: inline-block; font-size: 0.75rem; padding: 1px 7px; margin: 2px 3px 2px 0;
  border-radius: 10px; background: #fde7e5; color: var(--bad); }
.badge.ok { background: #e6f4ea; color: var(--good); }
.badge.plain { background: var(--soft); color: var(--muted); }
details { margin: 8px 0; } summary { cursor: pointer; color: var(--accent); }
code { font: 0.85em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
"""

esc = html.escape


def _pct(x: Any, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def _ci(pair: Any) -> str:
    return "" if not pair else f"[{_pct(pair[0])}, {_pct(pair[1])}]"


def _num(x: Any, fmt: str = ".3g") -> str:
    return "–" if x is None else format(x, fmt)


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], raw: bool = False, text: bool = False
) -> str:
    """An HTML table; cells are escaped unless ``raw`` (cells already HTML). Numbers are right
    aligned; a ``text`` table is left aligned throughout."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if raw else esc(str(c))}</td>" for c in row) + "</tr>"
        for row in rows
    )
    cls = ' class="text"' if text else ""
    return f'<div class="scroll"><table{cls}><tr>{head}</tr>{body}</table></div>'


def _figure_html(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    return (
        f'<figure id="{esc(fig.name)}"><img alt="{esc(fig.title)}" '
        f'src="data:image/png;base64,{data}"><figcaption>{esc(fig.caption)} '
        f"<code>{esc(fig.name)}</code></figcaption></figure>"
    )


def _badges(flags: dict[str, bool | None]) -> str:
    hits = [FLAGS[k] for k, v in flags.items() if v]
    if not hits:
        return '<span class="badge ok">no watch flag</span>'
    return "".join(f'<span class="badge">{esc(h)}</span>' for h in hits)


def _completion_card(title: str, meta: str, text: str, flags: dict[str, bool | None]) -> str:
    return (
        f'<div class="card"><div class="q"><b>{esc(title)}</b> · {meta}</div>{_badges(flags)}'
        f"<pre>{esc(text)}</pre></div>"
    )


# ---------------------------------------------------------------------------------- sections


@dataclass
class Report:
    """Everything being assembled: figures, HTML sections and the numbers for report.json."""

    config: ReportConfig
    figures: list[Figure] = field(default_factory=list)
    sections: list[tuple[str, str, str]] = field(default_factory=list)  # (id, title, html)
    numbers: dict[str, Any] = field(default_factory=dict)

    def add_figure(
        self, fig: Any, name: str, section: str, caption: str, data: Any = None
    ) -> Figure:
        title = fig.axes[0].get_title(loc="left")
        made = Figure(name, title, caption, _png(fig), section)
        self.figures.append(made)
        self.numbers.setdefault("figures", []).append(
            {"file": f"{name}.png", "title": title, "section": section, "data": data}
        )
        return made


def train_section(report: Report, runs: list[Run]) -> None:
    weight = report.config.smoothing
    figs: list[Figure] = []
    numbers: dict[str, Any] = {r.label: {} for r in runs}

    def add(metric: Metric) -> None:
        fig, data = step_figure(metric, runs, weight)
        if not data:
            return
        for label, points in data.items():
            numbers[label][metric.key] = points
        slug = metric.key.replace("/", "-")
        caption = metric.about + (
            f" Thin: raw value per step; thick: EMA (weight {weight:g}, debiased)."
            if metric.smooth
            else ""
        )
        figs.append(report.add_figure(fig, f"train-{slug}", "train", caption.strip(), data))

    add(TRAIN_METRICS[0])
    for name in reward_names(runs):
        add(
            Metric(
                f"rewards/{name}/mean",
                f"Reward: {name}",
                f"{name} reward (mean per step)",
                about=f"Mean of the '{name}' reward function over the step's completions.",
            )
        )
    fig, held = held_out_figure(runs)
    if any(held.values()):
        for label, data in held.items():
            numbers[label]["held_out"] = data
        figs.append(
            report.add_figure(
                fig,
                "train-held-out",
                "train",
                "Greedy decoding of held-out (test) questions on the live model, every "
                "eval_every steps; bars: Wilson 95% interval on eval/n questions.",
                held,
            )
        )
    for metric in TRAIN_METRICS[1:]:
        add(metric)

    table = train_table(runs)
    body = table + '<div class="grid">' + "".join(_figure_html(f) for f in figs) + "</div>"
    report.sections.append(("train", "Training", body))
    report.numbers["train"] = numbers


def train_table(runs: list[Run]) -> str:
    """Settings and headline numbers of each training run: one column per run."""

    def first_last(series: dict[int, float], fmt: str) -> str:
        if not series:
            return "–"
        steps = sorted(series)
        return f"{format(series[steps[0]], fmt)} → {format(series[steps[-1]], fmt)}"

    columns = []
    for run in runs:
        c = run.data["config"]
        g, ours = c.get("grpo_config") or {}, c.get("grpo_gsm8k") or {}
        series, final = run.data["series"], run.data["final"]
        steps = sorted({s for key in ("reward", "loss") for s in series.get(key, {})})
        times = list(series.get("step_time", {}).values())
        held = series.get("eval/format_rate", {})
        columns.append(
            [
                str((c.get("model") or {}).get("name", "–")),
                f"{steps[-1]} of {g.get('max_steps', '?')}" if steps else "none yet",
                f"{g.get('loss_type', '–')} / {g.get('scale_rewards', '–')} / {g.get('beta', '–')}",
                f"{_num(g.get('learning_rate'))} ({g.get('lr_scheduler_type', '–')})",
                f"{g.get('per_device_train_batch_size', '–')} × "
                f"{g.get('gradient_accumulation_steps', 1)} / {g.get('num_generations', '–')}",
                f"{g.get('max_completion_length', '–')} tokens, T={g.get('temperature', '–')}",
                ", ".join(
                    f"{n}×{w:g}" if isinstance(w, int | float) else n
                    for n, w in zip(
                        ours.get("rewards") or [],
                        (g.get("reward_weights") or []) + [None] * 9,
                        strict=False,
                    )
                )
                or "–",
                first_last(series.get("reward", {}), "+.2f"),
                first_last({s: 100 * v for s, v in held.items()}, ".0f") + (" %" if held else ""),
                f"{sum(times) / len(times):.1f} s" if times else "–",
                (
                    f"{final['train_runtime']:.0f} s"
                    + (f" ({final['sessions']} sessions)" if final["sessions"] > 1 else "")
                    if final
                    else "running"
                ),
            ]
        )
    labels = [
        "model",
        "steps logged",
        "loss / scale_rewards / beta",
        "learning rate",
        "completions per batch × accumulation / per prompt",
        "completions",
        "rewards × weights",
        "total reward, first → last step",
        "held-out format rate, first → last",
        "mean step time",
        "train runtime",
    ]
    rows = [[label, *[col[i] for col in columns]] for i, label in enumerate(labels)]
    return _table(["", *[r.label for r in runs]], rows)


def eval_section(report: Report, runs: list[Run]) -> None:
    metrics = {r.label: eval_metrics(r) for r in runs}
    report.numbers["eval"] = metrics
    figs = [
        report.add_figure(
            eval_metrics_figure(runs, metrics),
            "eval-metrics",
            "eval",
            "Points: rate; bars: Wilson 95% interval on the n questions (with K samples per "
            "question: the mean over samples).",
            {k: v["rates"] for k, v in metrics.items()},
        )
    ]
    fig = pass_k_figure(runs, metrics)
    if fig is not None:
        figs.append(
            report.add_figure(
                fig,
                "eval-pass-at-k",
                "eval",
                "Unbiased pass@k (Chen et al. 2021) and majority vote of the flexible answers.",
                {k: {"pass@k": v["pass@k"], "maj@k": v["maj@k"]} for k, v in metrics.items()},
            )
        )
    fig = speed_figure(runs, metrics)
    if fig is not None:
        figs.append(
            report.add_figure(
                fig,
                "eval-throughput",
                "eval",
                "Generated tokens / generation wall time (model load excluded), as measured by "
                "each eval on its own machine.",
                {k: v["generated_tokens_per_s"] for k, v in metrics.items()},
            )
        )
    headers = ["metric", *[r.label for r in runs]]
    names = {
        "accuracy_strict": "accuracy, strict",
        "accuracy_flexible": "accuracy, flexible",
        "format": "format (#### N line)",
        "truncated": "hit the token limit",
    }
    rows = [
        [
            label,
            *[
                f"{_pct(m['rates'][key]['value'])} {_ci(m['rates'][key]['ci95'])}"
                if key in m["rates"]
                else "–"
                for m in metrics.values()
            ],
        ]
        for key, label in names.items()
    ]
    ks = sorted(
        {k for m in metrics.values() for k in (m["pass@k"] or {})}, key=lambda k: int(k[5:])
    )
    for k in ks:
        rows.append(
            [
                f"{k} (strict / flexible)",
                *[
                    f"{_pct(m['pass@k'][k]['strict'])} / {_pct(m['pass@k'][k]['flexible'])}"
                    if m["pass@k"] and k in m["pass@k"]
                    else "–"
                    for m in metrics.values()
                ],
            ]
        )
        maj = "maj@" + k[5:]
        rows.append(
            [f"{maj} (flexible)", *[_pct((m["maj@k"] or {}).get(maj)) for m in metrics.values()]]
        )

    def decoding(m: dict[str, Any]) -> str:
        d = m["decoding"] or {}
        mode = "greedy" if d.get("greedy") else f"T={d.get('temperature')} top_p={d.get('top_p')}"
        return f"{mode}, {d.get('max_new_tokens', '–')} tokens"

    rows += [
        ["questions (n)", *[str(m["n"]) for m in metrics.values()]],
        ["samples per question", *[str(m["samples_per_question"]) for m in metrics.values()]],
        [
            "mean completion tokens",
            *[_num(m["mean_completion_tokens"], ".1f") for m in metrics.values()],
        ],
        [
            "generated tokens/s",
            *[_num(m["generated_tokens_per_s"], ".1f") for m in metrics.values()],
        ],
        ["prompts/s", *[_num(m["prompts_per_s"], ".2f") for m in metrics.values()]],
        ["model", *[str(m["model"]) for m in metrics.values()]],
        ["backend / prompt", *[f"{m['backend']} / {m['prompt_style']}" for m in metrics.values()]],
        ["decoding", *[decoding(m) for m in metrics.values()]],
    ]
    body = (
        _table(headers, rows)
        + '<div class="grid">'
        + "".join(_figure_html(f) for f in figs)
        + "</div>"
    )
    report.sections.append(("eval", "Evaluation", body))


def paired_section(report: Report, found: list[dict[str, Any]]) -> None:
    names = {
        "accuracy_strict": "accuracy, strict",
        "accuracy_flexible": "accuracy, flexible",
        "format": "format (#### N line)",
        "answer_line": "one final #### N line (what the format reward pays)",
        "stopped": "stopped before the token limit",
    }
    parts = []
    numbers = []
    for i, pair in enumerate(found):
        s = pair["summary"]
        fig = report.add_figure(
            paired_figure(pair),
            f"paired-{i + 1}",
            "paired",
            "Difference B − A with Newcombe's paired 95% interval (method 10); p: exact McNemar; "
            "+fixed / −broken questions.",
            s["metrics"],
        )
        rows = []
        for key, label in names.items():
            r = s["metrics"].get(key)
            if not r:
                continue
            lo, hi = r["diff_ci"]
            cls = "good" if lo > 0 else "bad" if hi < 0 else ""
            rows.append(
                [
                    esc(label),
                    f"{_pct(r['rate_a'])} {_ci(r['ci_a'])}",
                    f"{_pct(r['rate_b'])} {_ci(r['ci_b'])}",
                    f'<span class="{cls}">{100 * r["diff"]:+.1f} pts</span> '
                    f"[{100 * lo:+.1f}, {100 * hi:+.1f}]",
                    str(r["fixed"]),
                    str(r["broken"]),
                    f"{r['mcnemar_p']:.2g}",
                ]
            )
        table = _table(
            [
                "metric",
                "A [95% CI]",
                "B [95% CI]",
                "B − A [95% CI]",
                "fixed",
                "broken",
                "McNemar p",
            ],
            rows,
            raw=True,
        )
        changed = pair["changed"]
        shown = changed[: report.config.max_changed]
        cards = []
        for row in shown:
            change = ", ".join(
                f"{k.replace('accuracy_', '')}: {v}" for k, v in row["change"].items()
            )
            verdict = "good" if "fixed" in row["change"].values() else "bad"
            cards.append(
                f'<div class="card"><div class="q"><b>{esc(str(row.get("id")))}</b> · gold '
                f'<b>{esc(str(row.get("gold")))}</b> · <span class="{verdict}">{esc(change)}</span>'
                f'</div><div class="q">{esc(str(row.get("question") or ""))}</div>'
                f'<div class="pair"><div><div class="muted">A ({esc(str(pair["a"]))}): flexible '
                f"answer {_answer(row.get('pred_flexible_a'))}</div><pre>{esc(row['completion_a'])}"
                f'</pre></div><div><div class="muted">B ({esc(str(pair["b"]))}): flexible answer '
                f"{_answer(row.get('pred_flexible_b'))}</div><pre>{esc(row['completion_b'])}"
                "</pre></div></div></div>"
            )
        more = (
            f'<p class="muted">… and {len(changed) - len(shown)} more (see compare.jsonl or '
            "report.json).</p>"
            if len(changed) > len(shown)
            else ""
        )
        parts.append(
            f"<h3>B = {esc(str(pair['b']))} vs A = {esc(str(pair['a']))}</h3>"
            f'<p class="muted">{s.get("n_common")} common questions (first completion each); '
            f"source: {esc(pair['source'])}.</p>"
            + table
            + '<div class="grid">'
            + _figure_html(fig)
            + "</div>"
            + f"<h3>Questions that changed ({len(changed)})</h3>"
            + (
                "".join(cards)
                or '<p class="muted">None: both runs got the same questions right.</p>'
            )
            + more
        )
        numbers.append(
            {
                "a": pair["a"],
                "b": pair["b"],
                "source": pair["source"],
                "n_common": s.get("n_common"),
                "metrics": s["metrics"],
                "changed": changed,
            }
        )
    report.sections.append(("paired", "Before / after (paired)", "".join(parts)))
    report.numbers["paired"] = numbers


WATCH_MEANING = {
    "multiple_answers": "hedging: the strict grader takes the last one",
    "text_after_answer": "keeps writing after its final answer",
    "hit_token_limit": "stopped by the token limit, not by end of text",
    "repeated_lines": "degenerate looping",
    "answers_disagree": "'#### A' then 'the answer is B'",
}


def watch_section(report: Report, train_runs: list[Run], eval_runs: list[Run]) -> None:
    parts = [
        "<p>Signs that a policy games the format reward or the grader instead of solving the "
        "problem, read from the completion text (<code>grpo_gsm8k.reward_hacking</code>). Each "
        "should stay near 0; a rise during training is worth reading the completions for.</p>"
    ]
    figs = []
    numbers: dict[str, Any] = {}
    columns: list[tuple[str, dict[str, Any]]] = []
    if train_runs:
        watches = {r.label: train_watch(r) for r in train_runs}
        numbers["train"] = watches
        if any(w["step"] for w in watches.values()):
            per_step = sorted({n for w in watches.values() for n in w["n"]})
            figs.append(
                report.add_figure(
                    train_watch_figure(train_runs, watches),
                    "watch-train",
                    "watch",
                    f"Share of the completions logged in completions.jsonl at each step "
                    f"({'/'.join(map(str, per_step))} per step: a small sample, so noisy).",
                    watches,
                )
            )
        columns += [(f"{r.label} (training)", watches[r.label]) for r in train_runs]
    if eval_runs:
        watches = {
            r.label: {"overall": flag_rates(f), "n_total": len(f)}
            for r in eval_runs
            for f in [eval_flags(r)]
        }
        numbers["eval"] = watches
        figs.append(
            report.add_figure(
                eval_watch_figure(eval_runs, watches),
                "watch-eval",
                "watch",
                "Share of each eval's completions with each flag.",
                watches,
            )
        )
        columns += [(f"{r.label} (eval)", watches[r.label]) for r in eval_runs]
    rows = [
        [
            f'{esc(label)}<br><span class="muted">{esc(WATCH_MEANING[name])}</span>',
            *[_pct(w["overall"][name]) for _, w in columns],
        ]
        for name, label in FLAGS.items()
    ]
    rows.append(["completions read", *[str(w["n_total"]) for _, w in columns]])
    parts.append(_table(["flag", *[c for c, _ in columns]], rows, raw=True))
    parts.append('<div class="grid">' + "".join(_figure_html(f) for f in figs) + "</div>")
    parts.append(samples_html(report, train_runs, eval_runs))
    report.sections.append(("watch", "Reward-hacking watch", "".join(parts)))
    report.numbers["watch"] = numbers


def stages(steps: Sequence[int]) -> list[tuple[str, int]]:
    """Early, middle and late steps among the logged ones (fewer when there are fewer steps)."""
    unique = sorted(set(steps))
    if not unique:
        return []
    picks = [("early", unique[0]), ("middle", unique[len(unique) // 2]), ("late", unique[-1])]
    out, seen = [], set()
    for name, step in picks:
        if step not in seen:
            seen.add(step)
            out.append((name, step))
    return out


def samples_html(report: Report, train_runs: list[Run], eval_runs: list[Run]) -> str:
    """A few completions per training stage (the first ones logged at that step) and per eval
    (those with a text flag first, then in question order), with their rewards / grades."""
    k = report.config.samples_per_stage
    parts = []
    for run in train_runs:
        rows = run.data["completions"]
        flags = train_flags(run)
        for stage, step in stages([r["step"] for r in rows]):
            picked = [(r, f) for r, f in zip(rows, flags, strict=True) if r["step"] == step][:k]
            cards = []
            for r, f in picked:
                rewards = {n: _number(v) for n, v in (r.get("rewards") or {}).items()}
                total = sum(v for v in rewards.values() if v is not None)
                meta = (
                    f"gold <b>{esc(str(r.get('gold')))}</b> · {esc(str(r.get('tokens')))} tokens"
                    + "".join(f" · {esc(n)} {_num(v, '+.2f')}" for n, v in rewards.items())
                    + f" · <b>sum {total:+.2f}</b>"
                )
                cards.append(_completion_card(f"step {step}", meta, r["completion"], f))
            parts.append(
                f"<h4>{esc(run.label)}: {stage} (step {step})</h4>"
                f'<div class="cards">{"".join(cards)}</div>'
            )
    for run in eval_runs:
        candidates: list[tuple[bool, int, dict[str, Any], dict[str, bool | None]]] = []
        for row in run.data["rows"].values():
            cut = (row.get("truncated") or [None])[0]
            f = completion_flags(row["completions"][0], None if cut is None else bool(cut))
            text_flagged = any(v for name, v in f.items() if name != "hit_token_limit")
            candidates.append((not text_flagged, len(candidates), row, f))
        cards = []
        for _, _, row, f in sorted(candidates, key=lambda c: c[:2])[:k]:
            meta = " · ".join(
                [f"gold <b>{esc(str(row.get('gold')))}</b>"]
                + [
                    f"{mode} {_answer(row.get(f'pred_{mode}', [None])[0])} "
                    + ('<span class="good">✓</span>' if row[f"correct_{mode}"][0] else "✗")
                    for mode in ("strict", "flexible")
                ]
            )
            cards.append(_completion_card(str(row.get("id")), meta, row["completions"][0], f))
        parts.append(
            f"<h4>{esc(run.label)}: {len(cards)} eval completions (flagged first)</h4>"
            f'<div class="cards">{"".join(cards)}</div>'
        )
    if not parts:
        return ""
    return "<h3>Sample completions</h3>" + "".join(parts)


def _answer(pred: Any) -> str:
    return "<i>no answer</i>" if pred is None else f"<b>{esc(str(pred))}</b>"


def inputs_html(runs: list[Run], provenance: list[dict[str, Any]]) -> str:
    rows = []
    for run, p in zip(runs, provenance, strict=True):
        files = "<br>".join(
            f"{esc(f['name'])} <span class='muted'>{f['bytes']:,} B · sha256 "
            f"{f['sha256'][:12]}… · {esc(f['modified'])}</span>"
            for f in p["files"]
        )
        notes = "<br>".join(esc(n) for n in run.notes)
        rows.append(
            [
                esc(run.label),
                esc(run.kind),
                f'<span class="path">{esc(p["path"])}</span>',
                files,
                notes,
            ]
        )
    return _table(["run", "kind", "path", "files read", "notes"], rows, raw=True, text=True)


# -------------------------------------------------------------------------------------- build


FIGURE_PREFIXES = {"train", "eval", "paired", "watch"}  # figure file names start with a section


def default_out(runs: Sequence[str]) -> Path:
    if len(runs) == 1:
        return Path(runs[0]) / "report"
    parent = Path(os.path.commonpath([str(Path(r).resolve()) for r in runs]))
    return parent / "report"


def write_atomic(path: Path, data: bytes) -> None:
    """Write through a temp file in the same folder and a rename, with the mode a plain new file
    would get (mkstemp alone makes it private; a report is meant to be shared)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_report(config: ReportConfig) -> Path:
    """Read the runs, draw the figures and write report.html, the PNGs and report.json into the
    output folder; returns the path of report.html."""
    if not config.runs:
        raise ReportError("give at least one RUN folder")
    if not 0 <= config.smoothing < 1:
        raise ReportError(f"--smoothing must be in [0, 1), got {config.smoothing}")
    if config.samples_per_stage < 0 or config.max_changed < 0:
        raise ReportError("--samples-per-stage and --max-changed must be >= 0")
    runs = load_runs(config.runs)
    out = Path(config.out) if config.out else default_out(config.runs)
    report = Report(config)
    train_runs = [r for r in runs if r.kind == "train"]
    eval_runs = [r for r in runs if r.kind == "eval"]
    if train_runs:
        train_section(report, train_runs)
    if eval_runs:
        eval_section(report, eval_runs)
    found = pairs(runs)
    if found:
        paired_section(report, found)
    if train_runs or eval_runs:
        watch_section(report, train_runs, eval_runs)

    provenance = [r.provenance() for r in runs]  # after pairing: its notes are in
    created = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    report.numbers = {
        "report": {
            "created": created,
            "settings": {
                "smoothing": config.smoothing,
                "samples_per_stage": config.samples_per_stage,
                "max_changed": config.max_changed,
            },
            "out": str(out),
            **runfiles.provenance(),
        },
        "inputs": provenance,
        **report.numbers,
    }
    own = report.numbers["report"]
    machine = own["machine"]
    report.sections.append(
        (
            "inputs",
            "Inputs",
            inputs_html(runs, provenance)
            + f'<p class="muted">Report written by <code>{esc(" ".join(own["command"]))}</code>'
            f" · grpo-gsm8k {esc(str(own['versions'].get('grpo_gsm8k')))} · "
            f"{esc(machine['platform'])} · {machine['cpu_count']} CPUs · flags "
            f"{esc(' '.join(machine['cpu_flags']) or 'none')}. Throughput figures are those each "
            "run measured on its own machine.</p>",
        )
    )

    output_dir(out)
    wanted = {f"{f.name}.png" for f in report.figures}
    for f in report.figures:
        write_atomic(out / f"{f.name}.png", f.png)
    for stale in out.glob("*.png"):  # figures of an earlier report that this one does not have
        if stale.name not in wanted and stale.name.split("-")[0] in FIGURE_PREFIXES:
            stale.unlink()
    numbers = json.dumps(report.numbers, indent=2, default=str) + "\n"
    write_atomic(out / "report.json", numbers.encode())
    write_atomic(out / "report.html", render_html(report, runs, created).encode())  # last
    return out / "report.html"


def render_html(report: Report, runs: list[Run], created: str) -> str:
    kinds: dict[str, int] = {}
    for run in runs:
        kinds[run.kind] = kinds.get(run.kind, 0) + 1
    what = ", ".join(f"{n} {k} run{'s' if n > 1 else ''}" for k, n in kinds.items())
    nav = "".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title, _ in report.sections)
    body = "".join(
        f'<section id="{sid}"><h2>{esc(title)}</h2>{content}</section>'
        for sid, title, content in report.sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>grpo-gsm8k report</title>"
        f"<style>{CSS}</style></head><body><main><header><h1>grpo-gsm8k report</h1>"
        f'<p class="muted">{esc(what)} · written {esc(created)} by grpo-gsm8k {__version__} '
        "from the run files alone · numbers in report.json</p>"
        f"<nav>{nav}</nav></header>{body}</main></body></html>\n"
    )
