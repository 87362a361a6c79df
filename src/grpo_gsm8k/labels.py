"""What a metric is called and how a rate is written, in every table, figure and report.

The keys are those of ``summary.json`` and ``compare.json``; the labels are what a person reads.
"""

from __future__ import annotations

from collections.abc import Sequence

METRIC_LABELS = {
    "accuracy_strict": "accuracy, strict",
    "accuracy_flexible": "accuracy, flexible",
    "format": "format (a #### N line)",
    "answer_line": "ends with its one #### N line",
    "stopped": "stopped before the token limit",
    "truncated": "truncated (hit the token limit)",
}


def pct(x: float | None, digits: int = 1) -> str:
    """``0.123`` -> ``12.3%``; None -> ``—``."""
    return "—" if x is None else f"{100 * x:.{digits}f}%"


def ci_text(pair: Sequence[float] | None, digits: int = 1) -> str:
    """A 95% interval of rates: ``[4.9%, 14.7%]``."""
    if not pair:
        return ""
    return f"[{pct(pair[0], digits)}, {pct(pair[1], digits)}]"


def points_text(diff: float, pair: Sequence[float]) -> str:
    """A difference of rates in points with its interval: ``+86.7 pts [+78.7, +91.2]``."""
    return f"{100 * diff:+.1f} pts [{100 * pair[0]:+.1f}, {100 * pair[1]:+.1f}]"
