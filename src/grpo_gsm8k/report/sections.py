"""The report's sections as plain values for the template (``templates/report.html.j2``): tables
of text cells, figures and completion cards. Nothing here writes HTML: the template does, and
escapes every value, model output included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..labels import METRIC_LABELS, ci_text, pct
from ..reward_hacking import FLAGS, completion_flags
from .figures import (
    PAIRED_RATES,
    Figure,
    eval_metrics_figure,
    eval_watch_figure,
    group_figure,
    held_out_figure,
    paired_figure,
    pass_k_figure,
    png,
    speed_figure,
    step_figure,
    train_watch_figure,
)
from .numbers import (
    SAMPLING_GROUPS,
    TRAIN_METRICS,
    Metric,
    data_groups,
    dataset_labels,
    eval_metrics,
    eval_watch,
    reward_names,
    stages,
    train_flags,
    train_watch,
)
from .runs import Run, number

NO_VALUE = object()  # a Piece without a bold value


@dataclass
class Cell:
    """A table cell: ``text``, drawn with CSS class ``cls``, then ``after``; ``note`` on a muted
    line below."""

    text: str
    cls: str = ""
    after: str = ""
    note: str = ""


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str | Cell]]
    text: bool = False  # left-aligned throughout


@dataclass
class Piece:
    """One item of a card's header line: ``text``, then ``value`` in bold (None: "no answer"),
    then ✓ or ✗ for ``ok``; ``bold`` makes the whole text bold."""

    text: str
    value: Any = NO_VALUE
    ok: bool | None = None
    bold: bool = False

    @property
    def has_value(self) -> bool:
        return self.value is not NO_VALUE


@dataclass
class Card:
    """A completion as shown: a title, its header pieces, its watch flags and the text."""

    title: str
    pieces: list[Piece]
    flags: list[str]
    text: str


@dataclass
class Section:
    id: str
    title: str
    content: dict[str, Any]


@dataclass
class Report:
    """Everything being assembled: figures, sections and the numbers for report.json."""

    smoothing: float
    samples_per_stage: int
    max_changed: int
    figures: list[Figure] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)

    def add_figure(
        self, fig: Any, name: str, section: str, caption: str, data: Any = None
    ) -> Figure:
        title = fig.axes[0].get_title(loc="left")
        made = Figure(name, title, caption, png(fig), section)
        self.figures.append(made)
        self.numbers.setdefault("figures", []).append(
            {"file": f"{name}.png", "title": title, "section": section, "data": data}
        )
        return made


def _num(x: Any, fmt: str = ".3g") -> str:
    return "–" if x is None else format(x, fmt)


def _flag_names(flags: dict[str, bool | None]) -> list[str]:
    return [FLAGS[k] for k, v in flags.items() if v]


# ------------------------------------------------------------------------------------ training


def train_section(report: Report, runs: list[Run]) -> None:
    weight = report.smoothing
    figs: list[Figure] = []
    numbers: dict[str, Any] = {r.label: {} for r in runs}

    def add(metric: Metric) -> None:
        fig, data = step_figure(metric, runs, weight)
        if not data:
            return
        for label, points in data.items():
            numbers[label][metric.key] = points
        caption = metric.about + (
            f" Thin: raw value per step; thick: EMA (weight {weight:g}, debiased)."
            if metric.smooth
            else ""
        )
        name = "train-" + metric.key.replace("/", "-")
        figs.append(report.add_figure(fig, name, "train", caption.strip(), data))

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
        caption = (
            "Greedy decoding of held-out (test) questions on the live model, every eval_every "
            "steps; bars: Wilson 95% interval on eval/n questions."
        )
        figs.append(report.add_figure(fig, "train-held-out", "train", caption, held))
    for metric in TRAIN_METRICS[1:]:
        add(metric)
    for group in SAMPLING_GROUPS:
        fig, data = group_figure(group, runs)
        if data:
            for label, points in data.items():
                numbers[label].update(points)
            figs.append(report.add_figure(fig, f"train-{group.name}", "train", group.about, data))
    content = {"table": train_table(runs), "figures": figs}
    report.sections.append(Section("train", "Training", content))
    report.numbers["train"] = numbers


def _first_last(series: dict[int, float], fmt: str) -> str:
    if not series:
        return "–"
    steps = sorted(series)
    return f"{format(series[steps[0]], fmt)} → {format(series[steps[-1]], fmt)}"


def _train_column(run: Run) -> list[str]:
    c = run.data["config"]
    g, ours = c.get("grpo_config") or {}, c.get("grpo_gsm8k") or {}
    series, final = run.data["series"], run.data["final"]
    steps = sorted({s for key in ("reward", "loss") for s in series.get(key, {})})
    times = list(series.get("step_time", {}).values())
    held = series.get("eval/format_rate", {})
    weights = (g.get("reward_weights") or []) + [None] * 9
    rewards = ", ".join(
        f"{n}×{w:g}" if isinstance(w, int | float) else n
        for n, w in zip(ours.get("rewards") or [], weights, strict=False)
    )
    runtime = "running"
    if final:
        runtime = f"{final['train_runtime']:.0f} s" + (
            f" ({final['sessions']} sessions)" if final["sessions"] > 1 else ""
        )
    return [
        str((c.get("model") or {}).get("name", "–")),
        f"{steps[-1]} of {g.get('max_steps', '?')}" if steps else "none yet",
        f"{g.get('loss_type', '–')} / {g.get('scale_rewards', '–')} / {g.get('beta', '–')}",
        f"{_num(g.get('learning_rate'))} ({g.get('lr_scheduler_type', '–')})",
        f"{g.get('per_device_train_batch_size', '–')} × "
        f"{g.get('gradient_accumulation_steps', 1)} / {g.get('num_generations', '–')}",
        f"{g.get('max_completion_length', '–')} tokens, T={g.get('temperature', '–')}",
        rewards or "–",
        _first_last(series.get("reward", {}), "+.2f"),
        _first_last({s: 100 * v for s, v in held.items()}, ".0f") + (" %" if held else ""),
        f"{sum(times) / len(times):.1f} s" if times else "–",
        runtime,
    ]


TRAIN_ROWS = [
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


def train_table(runs: list[Run]) -> Table:
    """Settings and headline numbers of each training run: one column per run."""
    columns = [_train_column(run) for run in runs]
    rows: list[list[str | Cell]] = [
        [label, *[col[i] for col in columns]] for i, label in enumerate(TRAIN_ROWS)
    ]
    return Table(["", *[r.label for r in runs]], rows)


# ---------------------------------------------------------------------------------------- eval


def _eval_figures(report: Report, runs: list[Run], metrics: dict[str, Any]) -> list[Figure]:
    datasets = {m["dataset_label"] for m in metrics.values() if m.get("dataset_label")}
    panels = {d: [r for r in runs if metrics[r.label].get("dataset_label") == d] for d in datasets}
    panels = dict(sorted(panels.items(), key=lambda kv: runs.index(kv[1][0])))
    figs = [
        report.add_figure(
            eval_metrics_figure(runs, metrics, panels),
            "eval-metrics",
            "eval",
            "Points: rate; bars: Wilson 95% interval on the n questions (with K samples per "
            "question: the mean over samples)."
            + (" One panel per data set." if len(panels) > 1 else ""),
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
    return figs


def eval_section(report: Report, runs: list[Run]) -> None:
    """One column per eval; evals on different data sets are grouped by data set, labelled with
    it, and drawn in panels side by side."""
    runs = [r for group in data_groups(runs) for r in group]
    labels = dataset_labels(runs)
    metrics = {r.label: eval_metrics(r) for r in runs}
    for label, name in labels.items():
        metrics[label]["dataset_label"] = name
    report.numbers["eval"] = metrics
    figs = _eval_figures(report, runs, metrics)
    headers = ["metric", *[f"{r.label} ({labels[r.label]})" if labels else r.label for r in runs]]
    table = Table(headers, eval_rows(list(metrics.values())))
    report.sections.append(Section("eval", "Evaluation", {"table": table, "figures": figs}))


def _decoding(m: dict[str, Any]) -> str:
    d = m["decoding"] or {}
    mode = "greedy" if d.get("greedy") else f"T={d.get('temperature')} top_p={d.get('top_p')}"
    return f"{mode}, {d.get('max_new_tokens', '–')} tokens"


def eval_rows(metrics: list[dict[str, Any]]) -> list[list[str | Cell]]:
    rows: list[list[str | Cell]] = []
    for key in ("accuracy_strict", "accuracy_flexible", "format", "truncated"):
        cells = [
            f"{pct(r['value'])} {ci_text(r['ci95'])}" if (r := m["rates"].get(key)) else "–"
            for m in metrics
        ]
        rows.append([METRIC_LABELS[key], *cells])
    ks = sorted({k for m in metrics for k in (m["pass@k"] or {})}, key=lambda k: int(k[5:]))
    for k in ks:
        both = [(m["pass@k"] or {}).get(k) for m in metrics]
        rows.append(
            [
                f"{k} (strict / flexible)",
                *[f"{pct(p['strict'])} / {pct(p['flexible'])}" if p else "–" for p in both],
            ]
        )
        maj = "maj@" + k[5:]
        rows.append([f"{maj} (flexible)", *[pct((m["maj@k"] or {}).get(maj)) for m in metrics]])
    rows += [
        ["questions (n)", *[str(m["n"]) for m in metrics]],
        ["samples per question", *[str(m["samples_per_question"]) for m in metrics]],
        ["mean completion tokens", *[_num(m["mean_completion_tokens"], ".1f") for m in metrics]],
        ["generated tokens/s", *[_num(m["generated_tokens_per_s"], ".1f") for m in metrics]],
        ["prompts/s", *[_num(m["prompts_per_s"], ".2f") for m in metrics]],
        ["model", *[str(m["model"]) for m in metrics]],
        ["data", *[str(m.get("dataset_label") or m.get("dataset") or "–") for m in metrics]],
        ["backend / prompt", *[f"{m['backend']} / {m['prompt_style']}" for m in metrics]],
        ["decoding", *[_decoding(m) for m in metrics]],
    ]
    return rows


# --------------------------------------------------------------------------------------- pairs


def _paired_rows(metrics: dict[str, Any]) -> list[list[str | Cell]]:
    rows: list[list[str | Cell]] = []
    for key in PAIRED_RATES:
        r = metrics.get(key)
        if not r:
            continue
        lo, hi = r["diff_ci"]
        cls = "good" if lo > 0 else "bad" if hi < 0 else ""
        rows.append(
            [
                METRIC_LABELS[key],
                f"{pct(r['rate_a'])} {ci_text(r['ci_a'])}",
                f"{pct(r['rate_b'])} {ci_text(r['ci_b'])}",
                Cell(f"{100 * r['diff']:+.1f} pts", cls, f" [{100 * lo:+.1f}, {100 * hi:+.1f}]"),
                str(r["fixed"]),
                str(r["broken"]),
                f"{r['mcnemar_p']:.2g}",
            ]
        )
    return rows


PAIRED_HEADERS = ["metric", "A [95% CI]", "B [95% CI]", "B − A [95% CI]", "fixed", "broken"]


def _changed_card(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row.get("id")),
        "gold": str(row.get("gold")),
        "change": ", ".join(f"{k.replace('accuracy_', '')}: {v}" for k, v in row["change"].items()),
        "verdict": "good" if "fixed" in row["change"].values() else "bad",
        "question": str(row.get("question") or ""),
        "a": Piece("flexible answer", row.get("pred_flexible_a")),
        "b": Piece("flexible answer", row.get("pred_flexible_b")),
        "completion_a": row["completion_a"],
        "completion_b": row["completion_b"],
    }


def paired_section(report: Report, found: list[dict[str, Any]]) -> None:
    shown, numbers = [], []
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
        changed = pair["changed"]
        cards = [_changed_card(row) for row in changed[: report.max_changed]]
        shown.append(
            {
                **{k: str(pair[k]) for k in ("a", "b", "source")},
                "dataset": pair.get("dataset"),
                "n_common": s.get("n_common"),
                "table": Table([*PAIRED_HEADERS, "McNemar p"], _paired_rows(s["metrics"])),
                "figure": fig,
                "n_changed": len(changed),
                "cards": cards,
                "more": len(changed) - len(cards),
            }
        )
        keep = ("a", "b", "source", "dataset")
        numbers.append(
            {
                **{k: pair[k] for k in keep if k in pair},
                "n_common": s.get("n_common"),
                "metrics": s["metrics"],
                "changed": changed,
            }
        )
    report.sections.append(Section("paired", "Before / after (paired)", {"pairs": shown}))
    report.numbers["paired"] = numbers


# ----------------------------------------------------------------------------------- the watch

WATCH_MEANING = {
    "multiple_answers": "hedging: the strict grader takes the last one",
    "text_after_answer": "keeps writing after its final answer",
    "hit_token_limit": "stopped by the token limit, not by end of text",
    "repeated_lines": "degenerate looping",
    "answers_disagree": "'#### A' then 'the answer is B'",
    "no_number": "collapse to short non-answers",
}


def _watch_figures(
    report: Report, train_runs: list[Run], eval_runs: list[Run], numbers: dict[str, Any]
) -> list[Figure]:
    figs = []
    if train_runs and any(w["step"] for w in numbers["train"].values()):
        watches = numbers["train"]
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
    if eval_runs:
        figs.append(
            report.add_figure(
                eval_watch_figure(eval_runs, numbers["eval"]),
                "watch-eval",
                "watch",
                "Share of each eval's completions with each flag.",
                numbers["eval"],
            )
        )
    return figs


def watch_section(report: Report, train_runs: list[Run], eval_runs: list[Run]) -> None:
    numbers: dict[str, Any] = {}
    if train_runs:
        numbers["train"] = {r.label: train_watch(r) for r in train_runs}
    if eval_runs:
        numbers["eval"] = {r.label: eval_watch(r) for r in eval_runs}
    columns = [(f"{r.label} (training)", numbers["train"][r.label]) for r in train_runs]
    columns += [(f"{r.label} (eval)", numbers["eval"][r.label]) for r in eval_runs]
    rows: list[list[str | Cell]] = [
        [Cell(label, note=WATCH_MEANING[name]), *[pct(w["overall"][name]) for _, w in columns]]
        for name, label in FLAGS.items()
    ]
    rows.append(["completions read", *[str(w["n_total"]) for _, w in columns]])
    content = {
        "table": Table(["flag", *[c for c, _ in columns]], rows),
        "figures": _watch_figures(report, train_runs, eval_runs, numbers),
        "samples": train_samples(report, train_runs) + eval_samples(report, eval_runs),
    }
    report.sections.append(Section("watch", "Reward-hacking watch", content))
    report.numbers["watch"] = numbers


def train_samples(report: Report, runs: list[Run]) -> list[dict[str, Any]]:
    """A few completions per training stage (the first ones logged at that step), with their
    rewards."""
    out = []
    for run in runs:
        rows = run.data["completions"]
        flags = train_flags(run)
        for stage, step in stages([r["step"] for r in rows]):
            picked = [(r, f) for r, f in zip(rows, flags, strict=True) if r["step"] == step]
            cards = []
            for r, f in picked[: report.samples_per_stage]:
                rewards = {n: number(v) for n, v in (r.get("rewards") or {}).items()}
                total = sum(v for v in rewards.values() if v is not None)
                pieces = [Piece("gold", str(r.get("gold"))), Piece(f"{r.get('tokens')} tokens")]
                pieces += [Piece(f"{n} {_num(v, '+.2f')}") for n, v in rewards.items()]
                pieces.append(Piece(f"sum {total:+.2f}", bold=True))
                cards.append(Card(f"step {step}", pieces, _flag_names(f), r["completion"]))
            out.append({"heading": f"{run.label}: {stage} (step {step})", "cards": cards})
    return out


def eval_samples(report: Report, runs: list[Run]) -> list[dict[str, Any]]:
    """A few completions per eval (those with a text flag first, then in question order), with
    their grades."""
    out = []
    for run in runs:
        candidates: list[tuple[bool, int, dict[str, Any], dict[str, bool | None]]] = []
        for row in run.data["rows"].values():
            cut = (row.get("truncated") or [None])[0]
            f = completion_flags(row["completions"][0], None if cut is None else bool(cut))
            text_flagged = any(v for name, v in f.items() if name != "hit_token_limit")
            candidates.append((not text_flagged, len(candidates), row, f))
        cards = []
        for _, _, row, f in sorted(candidates, key=lambda c: c[:2])[: report.samples_per_stage]:
            pieces = [Piece("gold", str(row.get("gold")))] + [
                Piece(mode, row.get(f"pred_{mode}", [None])[0], bool(row[f"correct_{mode}"][0]))
                for mode in ("strict", "flexible")
            ]
            cards.append(Card(str(row.get("id")), pieces, _flag_names(f), row["completions"][0]))
        heading = f"{run.label}: {len(cards)} eval completions (flagged first)"
        out.append({"heading": heading, "cards": cards})
    return out


# -------------------------------------------------------------------------------------- inputs


def inputs_section(report: Report, runs: list[Run], provenance: list[dict[str, Any]]) -> None:
    own = report.numbers["report"]
    rows = [
        {
            "label": run.label,
            "kind": run.kind,
            "path": p["path"],
            "files": [
                (f["name"], f"{f['bytes']:,} B · sha256 {f['sha256'][:12]}… · {f['modified']}")
                for f in p["files"]
            ],
            "notes": run.notes,
        }
        for run, p in zip(runs, provenance, strict=True)
    ]
    content = {
        "runs": rows,
        "command": " ".join(own["command"]),
        "version": str(own["versions"].get("grpo_gsm8k")),
        "machine": own["machine"],
    }
    report.sections.append(Section("inputs", "Inputs", content))
