"""The statistics behind eval and compare: Wilson intervals, pass@k, paired comparisons.

scipy does the exact tests (``binomtest`` for McNemar); the small closed forms live here.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

Z95 = 1.959963984540054  # the 97.5% normal quantile, as scipy uses


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% for z=1.96); (0, 1) when n=0.

    Same numbers as ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``, without its
    n >= 1 requirement and with a free z."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021):
    ``1 - C(n-c, k) / C(n, k)``, computed as a stable product."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def majority(answers: Sequence[str | None]) -> str | None:
    """The most frequent non-None answer; ties go to the answer seen first. None if no answer."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)


@dataclass(frozen=True)
class PairedResult:
    """B vs A on the same n questions (1 = success): both rates with Wilson 95% CIs, the
    difference B - A with Newcombe's paired 95% CI, and exact McNemar."""

    n: int
    rate_a: float
    rate_b: float
    ci_a: tuple[float, float]
    ci_b: tuple[float, float]
    diff: float
    diff_ci: tuple[float, float]
    fixed: int  # A wrong, B right
    broken: int  # A right, B wrong
    both_right: int
    both_wrong: int
    mcnemar_p: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("ci_a", "ci_b", "diff_ci"):
            d[key] = list(d[key])
        return d


def mcnemar_exact(fixed: int, broken: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of ``fixed`` out of the discordant pairs
    against 1/2. 1.0 when there are no discordant pairs."""
    from scipy.stats import binomtest

    if fixed + broken == 0:
        return 1.0
    return float(binomtest(fixed, fixed + broken, 0.5).pvalue)


def newcombe_paired_ci(
    both: int, a_only: int, b_only: int, neither: int, z: float = Z95
) -> tuple[float, float]:
    """95% CI of p_B - p_A for paired proportions: Newcombe (1998), method 10 (Wilson score
    intervals of each margin combined through the correlation phi of the 2x2 table, with the
    numerator AD - BC reduced by n/2 when positive, as in the paper)."""
    n = both + a_only + b_only + neither
    if n == 0:
        return (-1.0, 1.0)
    a_right, b_right = both + a_only, both + b_only
    pa, pb = a_right / n, b_right / n
    la, ua = wilson(a_right, n, z)
    lb, ub = wilson(b_right, n, z)
    # phi: the correlation of the two outcomes; 0 when a margin is empty (the product below is 0)
    margins = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    # Newcombe's phi: AD - BC shrunk by n/2 towards 0 when positive
    cross = both * neither - a_only * b_only
    corrected = max(cross - n / 2, 0.0) if cross > 0 else float(cross)
    phi = corrected / math.sqrt(margins) if margins > 0 else 0.0
    d = pb - pa
    lower_sq = (pb - lb) ** 2 - 2 * phi * (pb - lb) * (ua - pa) + (ua - pa) ** 2
    upper_sq = (ub - pb) ** 2 - 2 * phi * (ub - pb) * (pa - la) + (pa - la) ** 2
    return (
        max(-1.0, d - math.sqrt(max(0.0, lower_sq))),
        min(1.0, d + math.sqrt(max(0.0, upper_sq))),
    )


def paired(a: Sequence[bool], b: Sequence[bool]) -> PairedResult:
    """Compare outcomes ``b`` against ``a`` on the same questions (same order)."""
    if len(a) != len(b):
        raise ValueError(f"paired outcomes differ in length: {len(a)} vs {len(b)}")
    n = len(a)
    both = sum(1 for x, y in zip(a, b, strict=True) if x and y)
    a_only = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    b_only = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    neither = n - both - a_only - b_only
    ra, rb = (both + a_only) / n if n else 0.0, (both + b_only) / n if n else 0.0
    return PairedResult(
        n=n,
        rate_a=ra,
        rate_b=rb,
        ci_a=wilson(both + a_only, n),
        ci_b=wilson(both + b_only, n),
        diff=rb - ra,
        diff_ci=newcombe_paired_ci(both, a_only, b_only, neither),
        fixed=b_only,
        broken=a_only,
        both_right=both,
        both_wrong=neither,
        mcnemar_p=mcnemar_exact(b_only, a_only),
    )
