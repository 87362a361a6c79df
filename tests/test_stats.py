"""Statistics against scipy and published / hand-computed values."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binomtest

from grpo_gsm8k.stats import (
    majority,
    mcnemar_exact,
    newcombe_paired_ci,
    paired,
    pass_at_k,
    wilson,
)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (7, 20), (20, 20), (1, 1), (250, 500)])
def test_wilson_matches_scipy(k: int, n: int) -> None:
    ci = binomtest(k, n).proportion_ci(method="wilson")
    assert wilson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_wilson_by_hand_and_empty() -> None:
    # 0 of 4 with z = 1.96: upper = z^2 / (n + z^2) = 3.8416 / 7.8416
    assert wilson(0, 4, z=1.96) == pytest.approx((0.0, 3.8416 / 7.8416))
    assert wilson(0, 0) == (0.0, 1.0)


def test_pass_at_k() -> None:
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - math.comb(7, 5) / math.comb(10, 5))
    assert pass_at_k(10, 0, 10) == 0.0
    assert pass_at_k(10, 6, 5) == 1.0  # fewer than k wrong samples: some draw always passes
    assert pass_at_k(4, 4, 4) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_majority_ties_go_to_first_seen() -> None:
    assert majority(["3", "5", "5", "3"]) == "3"
    assert majority(["5", None, "3", "3"]) == "3"
    assert majority([None, None]) is None


def test_mcnemar_is_binomial_on_discordant_pairs() -> None:
    assert mcnemar_exact(9, 2) == pytest.approx(binomtest(9, 11, 0.5).pvalue)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 5) == pytest.approx(2 * 0.5**5)


def test_newcombe_published_example() -> None:
    # Cavo et al. 2012, in Fagerland, Lydersen & Laake, "Statistical analysis of contingency
    # tables", ch. 8: table [[59, 6], [16, 80]], estimate -0.0621, CI -0.1186 to -0.0046
    lo, hi = newcombe_paired_ci(both=59, a_only=16, b_only=6, neither=80)
    assert (round(lo, 4), round(hi, 4)) == (-0.1186, -0.0046)


def test_paired_counts() -> None:
    a = [True, True, False, False, True, False, True, True, False, False]
    b = [True, False, True, True, True, True, True, True, False, True]
    r = paired(a, b)
    assert (r.fixed, r.broken, r.both_right, r.both_wrong) == (4, 1, 4, 1)
    assert r.rate_a == pytest.approx(0.5)
    assert r.rate_b == pytest.approx(0.8)
    assert r.diff == pytest.approx(0.3)
    assert r.diff_ci[0] < r.diff < r.diff_ci[1]
    assert r.mcnemar_p == pytest.approx(binomtest(4, 5, 0.5).pvalue)
    ci = binomtest(8, 10).proportion_ci(method="wilson")
    assert r.ci_b == pytest.approx((ci.low, ci.high))
    with pytest.raises(ValueError):
        paired([True], [True, False])
