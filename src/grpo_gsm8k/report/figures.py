"""The report's figures, drawn with matplotlib's object API on an Agg canvas (no pyplot state):
one function per figure, each returning the matplotlib figure (and the numbers it drew where the
caller needs them). Runs of a kind share each figure's axes, one colour per run.
"""

from __future__ import annotations

import base64
import io
import math
import textwrap
from dataclasses import dataclass
from typing import Any

from ..labels import METRIC_LABELS
from ..reward_hacking import FLAGS
from .numbers import HELD_OUT, Metric, MetricGroup, held_out_points, series_points
from .runs import Run

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
STYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P"]
WIDTH, HEIGHT, DPI = 6.4, 3.7, 130
FLAT_REL, FLAT_ABS = 1e-6, 1e-12  # a series whose spread is below this is drawn as flat


@dataclass
class Figure:
    """A rendered figure: file name, title, caption and PNG bytes."""

    name: str
    title: str
    caption: str
    png: bytes
    section: str

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


# ------------------------------------------------------------------------------------- helpers


def _new_axes(
    title: str, xlabel: str, ylabel: str, height: float = HEIGHT, panels: int = 1
) -> tuple[Any, Any]:
    """A figure with one axes (or ``panels`` side by side, sharing y), titled and labelled."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    width = WIDTH * (1 if panels == 1 else min(2.0, 0.6 * panels + 0.4))
    fig = MplFigure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, sharey=True, squeeze=False)[0]
    axes[0].set_title(title, fontsize=11, loc="left", fontweight="bold")
    axes[0].set_ylabel(ylabel)
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.grid(True, color="#e5e5e5", linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return fig, axes[0] if panels == 1 else list(axes)


def _percent_axis(ax: Any, lower: float = 0.0, upper: float = 1.0) -> None:
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylim(lower - 0.03, upper + 0.03)


FLAT_ABS_ZERO = 1e-6  # a flat series this close to 0 is drawn as 0


def flat_axis(ax: Any, values: list[float], snap_zero: bool = True) -> bool:
    """For a series that does not move (its spread is float noise, e.g. 1.27e-7 around -1.0):
    centre the y axis on the value with a margin of half its size (1 around 0) and plain tick
    labels, instead of an axis of noise with a "1e-7" offset. Whether the series was flat."""
    from matplotlib.ticker import ScalarFormatter

    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return False
    low, high = min(finite), max(finite)
    if high - low > max(FLAT_ABS, FLAT_REL * max(abs(low), abs(high))):
        return False
    middle = (low + high) / 2
    if snap_zero and abs(middle) < FLAT_ABS_ZERO:  # a 0 that float arithmetic left at 1.27e-7
        middle = 0.0
    margin = 0.5 * abs(middle) if middle else 1.0
    ax.set_ylim(middle - margin, middle + margin)
    formatter = ScalarFormatter(useOffset=False)
    formatter.set_scientific(not 1e-3 <= abs(middle) < 1e4 and middle != 0)
    ax.yaxis.set_major_formatter(formatter)
    return True


def _integer_steps(ax: Any) -> None:
    """Whole steps on the x axis; one logged step is drawn between its neighbours, not on an axis
    of fractions of a step."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    low, high = ax.dataLim.intervalx
    if math.isfinite(low) and math.isfinite(high) and high - low < 1:
        ax.set_xlim(low - 1, high + 1)


def _legend(ax: Any) -> None:
    """Inside the axes for up to 3 entries; more go below it, in two columns, off the data."""
    entries = len(ax.get_legend_handles_labels()[0])
    if entries > 3:
        ax.legend(fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    elif entries:
        ax.legend(fontsize=8, frameon=False, loc="best")


def _styled(i_run: int, i_metric: int, n_runs: int) -> dict[str, Any]:
    """Colour by metric for one run; colour by run and line style/marker by metric for several."""
    marker = MARKERS[i_metric % len(MARKERS)]
    if n_runs == 1:
        return {"color": COLORS[i_metric % len(COLORS)], "marker": marker}
    return {
        "color": COLORS[i_run % len(COLORS)],
        "linestyle": STYLES[i_metric % len(STYLES)],
        "marker": marker,
    }


def _tick(label: str, width: int = 14) -> str:
    """A label wrapped onto short lines, for a tick."""
    return textwrap.fill(label, width)


def _short(label: Any, width: int = 24) -> str:
    text = str(label)
    return text if len(text) <= width else "…" + text[-(width - 1) :]


# ------------------------------------------------------------------------------------ training


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
    elif not flat_axis(
        ax, [v for p in data.values() for v in p["value"]], metric.key != "learning_rate"
    ) and (metric.key == "learning_rate"):
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    _integer_steps(ax)
    _legend(ax)
    return fig, data


def group_figure(group: MetricGroup, runs: list[Run]) -> tuple[Any, dict[str, Any]]:
    """Several keys of each run against step on one axes (e.g. mean and max of one quantity)."""
    fig, ax = _new_axes(group.title, "training step", group.ylabel)
    data: dict[str, Any] = {}
    shown = [r for r in runs if any(r.data["series"].get(k) for k in group.keys)]
    for i, run in enumerate(shown):
        for j, (key, name) in enumerate(group.keys.items()):
            points = series_points(run, key, None)
            if points is None:
                continue
            data.setdefault(run.label, {})[key] = points
            ax.plot(
                points["step"],
                points["value"],
                linewidth=1.4,
                markersize=3,
                label=name if len(shown) == 1 else f"{run.label}: {name}",
                **_styled(i, j, len(shown)),
            )
    flat_axis(ax, [v for d in data.values() for p in d.values() for v in p["value"]])
    _integer_steps(ax)
    _legend(ax)
    return fig, data


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


# ---------------------------------------------------------------------------------------- eval


def _grouped_positions(n_bars: int) -> tuple[list[float], float]:
    width = 0.8 / max(n_bars, 1)
    return [(k - (n_bars - 1) / 2) * width for k in range(n_bars)], width


EVAL_RATES = ("accuracy_strict", "accuracy_flexible", "format", "truncated")


def _eval_points(ax: Any, runs: list[Run], metrics: dict[str, Any], colors: list[str]) -> None:
    offsets, _ = _grouped_positions(len(runs))
    for i, run in enumerate(runs):
        rates = metrics[run.label]["rates"]
        xs, ys, lo, hi = [], [], [], []
        for x, key in enumerate(EVAL_RATES):
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
            color=colors[i],
            label=f"{run.label} (n={metrics[run.label]['n']})",
        )
    ax.set_xticks(range(len(EVAL_RATES)), [_tick(METRIC_LABELS[k], 12) for k in EVAL_RATES])
    ax.set_xlim(-0.6, len(EVAL_RATES) - 0.4)
    _percent_axis(ax)
    _legend(ax)


def eval_metrics_figure(
    runs: list[Run], metrics: dict[str, Any], panels: dict[str, list[Run]] | None = None
) -> Any:
    """Each eval's rates with their intervals; with ``panels`` (evals by data set name, more
    than one), one panel per data set side by side, its name below it."""
    panels = panels if panels and len(panels) > 1 else {"": runs}
    fig, axes = _new_axes(
        "Eval metrics with 95% intervals", "", "questions (%)", panels=len(panels)
    )
    axes = axes if isinstance(axes, list) else [axes]
    for ax, (name, group) in zip(axes, panels.items(), strict=True):
        colors = [COLORS[runs.index(r) % len(COLORS)] for r in group]
        _eval_points(ax, group, metrics, colors)
        if name:
            ax.set_xlabel(f"data: {name}", fontsize=10, fontweight="bold")
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
    offsets, width = _grouped_positions(len(runs))
    for i, run in enumerate(runs):
        rates = watches[run.label]["overall"]
        xs = [x + offsets[i] for x in range(len(FLAGS))]
        ys = [rates[name] or 0.0 for name in FLAGS]
        ax.bar(xs, ys, width=width * 0.92, color=COLORS[i % len(COLORS)], label=run.label)
    ax.set_xticks(range(len(FLAGS)), [_tick(label, 12) for label in FLAGS.values()], fontsize=7)
    _percent_axis(ax)
    ax.set_ylim(0, 1.03)
    if runs:  # rates near 0 leave the top free; below, the legend would sit on the tick labels
        ax.legend(fontsize=8, frameon=False, loc="upper right", ncol=2 if len(runs) > 3 else 1)
    return fig


# --------------------------------------------------------------------------------------- pairs

PAIRED_RATES = ("accuracy_strict", "accuracy_flexible", "format", "answer_line", "stopped")


def paired_figure(pair: dict[str, Any]) -> Any:
    """Forest plot: B - A with Newcombe's 95% interval per metric, McNemar p and counts."""
    s = pair["summary"]
    keys = [k for k in PAIRED_RATES if k in s["metrics"]]
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
    ax.set_yticks(range(len(keys)), [_tick(METRIC_LABELS[k], 22) for k in keys])
    ax.set_ylim(-0.6, len(keys) - 0.3)
    ax.invert_yaxis()
    ax.set_xlim(-105, 105)
    return fig
