"""The numbers a report shows, from runs already read (:mod:`.runs`): training series and their
smoothing, the in-training held-out eval with intervals, the reward-hacking watch, each eval's
rates and the before/after pairs. Everything here is a plain value that goes into report.json.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..labels import METRIC_LABELS
from ..reward_hacking import FLAGS, completion_flags, flag_rates
from ..stats import wilson
from .runs import Run


def ema(values: Sequence[float], weight: float) -> list[float]:
    """Exponential moving average with bias correction (as TensorBoard's smoothing): the first
    point is the first value; ``weight`` 0 returns the values."""
    out, acc = [], 0.0
    for i, v in enumerate(values, 1):
        acc = weight * acc + (1 - weight) * v
        out.append(acc / (1 - weight**i))
    return out


# ------------------------------------------------------------------------------------ training


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


@dataclass(frozen=True)
class MetricGroup:
    """Several metrics.jsonl keys drawn on one figure (raw points, no smoothing)."""

    name: str  # the figure file is train-<name>.png
    title: str
    ylabel: str
    keys: dict[str, str]  # key -> legend label
    about: str = ""


SAMPLING_GROUPS = [
    MetricGroup(
        "sampling-logp-difference",
        "Sampler vs trainer log-probs",
        "|log p(sampler) − log p(trainer)|",
        {
            "sampling/sampling_logp_difference/mean": "mean",
            "sampling/sampling_logp_difference/max": "max",
        },
        about="Per-token gap between the log-probs of the engine that sampled the completions "
        "(vLLM) and those of the model being trained (TRL's sampling/* metrics); near 0 when "
        "the two agree.",
    ),
    MetricGroup(
        "sampling-importance-ratio",
        "Importance-sampling ratio",
        "π(trainer) / π(sampler)",
        {
            "sampling/importance_sampling_ratio/min": "min",
            "sampling/importance_sampling_ratio/mean": "mean",
            "sampling/importance_sampling_ratio/max": "max",
        },
        about="The per-token ratio TRL's importance-sampling correction weights the loss by; "
        "1 when sampler and trainer agree.",
    ),
]

HELD_OUT = {
    "eval/accuracy_strict": METRIC_LABELS["accuracy_strict"],
    "eval/accuracy_flexible": METRIC_LABELS["accuracy_flexible"],
    "eval/format_rate": METRIC_LABELS["format"],
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


# ----------------------------------------------------------------------------------- the watch


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


def eval_watch(run: Run) -> dict[str, Any]:
    flags = eval_flags(run)
    return {"overall": flag_rates(flags), "n_total": len(flags)}


# ---------------------------------------------------------------------------------------- eval


def _rate(value: float, ci: Any, n: int) -> dict[str, Any]:
    return {"value": value, "ci95": ci or list(wilson(value * n, n))}


def eval_metrics(run: Run) -> dict[str, Any]:
    """The eval's rates with Wilson 95% intervals (truncation's computed here the way eval
    computes the others: on the n questions), pass@k / maj@k, speed and the data set."""
    s = run.data["summary"]
    n = int(s.get("n") or len(run.data["rows"]))
    acc = s.get("accuracy") or {}
    ci = s.get("ci95") or {}
    rates: dict[str, dict[str, Any]] = {}
    for mode in ("strict", "flexible"):
        if mode in acc:
            rates[f"accuracy_{mode}"] = _rate(acc[mode], ci.get(mode), n)
    if "format_rate" in s:
        rates["format"] = _rate(s["format_rate"], s.get("format_ci95"), n)
    if "truncation_rate" in s:
        rates["truncated"] = _rate(s["truncation_rate"], None, n)
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
        "dataset": run.data.get("dataset"),
    }


def data_groups(evals: list[Run]) -> list[list[Run]]:
    """The eval runs by data set (the data file's sha256), in order of first appearance. Evals
    whose data is unknown (no summary yet) join the first eval's group; when at most one data set
    is known, all evals are one group."""
    keys = [r.data.get("data_key") for r in evals]
    known = list(dict.fromkeys(k for k in keys if k))
    if len(known) <= 1:
        return [evals] if evals else []
    groups: dict[str, list[Run]] = {k: [] for k in known}
    first = keys[0] or known[0]
    for run, key in zip(evals, keys, strict=True):
        groups[key or first].append(run)
    return list(groups.values())


def dataset_labels(evals: list[Run]) -> dict[str, str]:
    """A data-set name per eval run label, for runs on more than one data set (empty when all
    share the data): the data file's name, with the start of its sha256 where two differ."""
    groups = data_groups(evals)
    if len(groups) < 2:
        return {}
    names = [next((r.data["dataset"] for r in g if r.data.get("dataset")), "?") for g in groups]
    out = {}
    for group, name in zip(groups, names, strict=True):
        if names.count(name) > 1:
            name = f"{name} ({str(group[0].data.get('data_key'))[:8]})"
        out.update({r.label: name for r in group})
    return out


# --------------------------------------------------------------------------------------- pairs


def _resolved(path: Any) -> str | None:
    return str(Path(path).resolve()) if isinstance(path, str) else None


def pairs(runs: list[Run]) -> list[dict[str, Any]]:
    """Every compare dir, then, per data set, every eval run after the first paired with the
    first (unless a compare dir already holds that pair). Runs with no common question are
    noted, not paired."""
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
    datasets = dataset_labels(evals)
    for group in data_groups(evals):
        a = group[0]
        for b in group[1:]:
            if (_resolved(str(a.path)), _resolved(str(b.path))) in done:
                continue
            try:
                summary, changed = pair_runs(str(a.path), str(b.path), torn_tail="skip")
            except UserError as e:
                b.notes.append(f"not paired with {a.label}: {e}")
                continue
            pair = {"source": "computed", "a": a.label, "b": b.label}
            if a.label in datasets:
                pair["dataset"] = datasets[a.label]
            out.append({**pair, "summary": summary, "changed": changed})
    return out
