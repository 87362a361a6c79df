"""The answer protocol on real GSM8K golds, hand-written edge cases and generated spellings."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grpo_gsm8k import grading
from grpo_gsm8k.grading import (
    MODES,
    answer_line,
    canonical,
    extract_flexible,
    extract_strict,
    grade,
    parse_gold,
    parse_number,
    same_number,
)


@pytest.mark.parametrize("split", ["train", "test"])
def test_every_gold_grades_correct_against_itself(gsm8k_dir: Path, split: str) -> None:
    n = 0
    for line in (gsm8k_dir / f"{split}.jsonl").open():
        answer = json.loads(line)["answer"]
        gold = parse_gold(answer)
        assert gold == answer.rsplit("####", 1)[1].strip().replace(",", "")
        for mode in MODES:
            assert grade(answer, gold, mode), (split, n, mode)
        n += 1
    assert n == {"train": 7473, "test": 1319}[split]


def test_comma_and_negative_golds(gsm8k_dir: Path) -> None:
    raws = [
        json.loads(line)["answer"].rsplit("####", 1)[1].strip()
        for split in ("train", "test")
        for line in (gsm8k_dir / f"{split}.jsonl").open()
    ]
    commas = [r for r in raws if "," in r]
    negatives = [r for r in raws if r.startswith("-")]
    assert len(commas) == 93 and len(negatives) == 5
    for raw in commas + negatives:
        gold = parse_gold(f"work\n#### {raw}")
        assert Decimal(gold) == Decimal(raw.replace(",", ""))
        assert grade(f"So the total is {raw}.\n#### {raw}", gold, "strict")
    assert all(parse_gold(f"#### {r}").startswith("-") for r in negatives)


# (completion, strict prediction, flexible prediction)
EDGE_CASES = [
    ("First guess:\n#### 11\nWait, recheck.\n#### 18", "18", "18"),
    ("#### 11 is wrong; the answer is 18", "11", "18"),
    ("The total is $\\boxed{1{,}080}$.", None, "1080"),
    ("So she pays $1,234.50.", None, "1234.5"),
    ("#### $1,234.50", "1234.5", "1234.5"),
    ("The change is -3 degrees.\n#### -3", "-3", "-3"),
    ("#### −7", "-7", "-7"),
    ("She owes -$5.\n#### $-5", "-5", "-5"),
    ("Nothing to see here.", None, None),
    ("", None, None),
    ("####", None, None),
    ("#### \nforty-two 42", None, "42"),
    ("16-3-4=9 eggs, 9*2 = $18 per day", None, "18"),
    ("The answer is: 42%.", None, "42"),
    ("Answer: 18 dollars", None, "18"),
    ("The ANSWER IS 7.\nThen I add 3 more and get 10.", None, "7"),
    ("\\boxed{x = 5} and later 9", None, "5"),
    ("The answer is below.\n#### 42\nSo the answer is clear.", "42", "42"),
    ("1\\,080 apples", None, "1080"),
    ("It costs \\$12 in total", None, "12"),
    ("#### 18.00", "18", "18"),
    ("#### 0.50", "0.5", "0.5"),
    ("#### 1,000,000", "1000000", "1000000"),
    ("values 1,2,3", None, "3"),
    ("x" * 200_000 + " so the answer is 77\n#### 77", "77", "77"),
    ("word " * 50_000, None, None),
]


@pytest.mark.parametrize(("completion", "strict", "flexible"), EDGE_CASES)
def test_edge_cases(completion: str, strict: str | None, flexible: str | None) -> None:
    assert extract_strict(completion) == strict
    assert extract_flexible(completion) == flexible


# Protocol corners: headings, "=" after "answer is", Unicode digits, long numbers.
PROTOCOL_CASES = [
    ("#### Step 2: Revenue\nShe makes $18", None, "18"),
    ("#### Step 2: Revenue\n9 * 2 = 18\n#### 18", "18", "18"),
    ("#### 18\n\n#### Final check", "18", "18"),
    ("#### **18**", "18", "18"),
    ("**#### $18.00**", "18", "18"),
    ("####\t$ **-5**", "-5", "-5"),
    ("##### 7", "7", "7"),
    ("#### The total is 18", None, "18"),
    ("the answer is 20 - 2 = 18", None, "18"),
    ("The answer is: $3 \\times 6 = 18$.", None, "18"),
    ("Answer: 4 + 5 = 9 apples\nThen 2", None, "9"),
    ("The answer is 18. Then 3 = 3.", None, "18"),
    ("The answer is x =\n5", None, "5"),
    ("#### １８", "18", "18"),
    ("#### ١٨", "18", "18"),
    ("#### １，０８０", "1080", "1080"),
    ("The area is 25 m².", None, "25"),
    ("It is ½ of 10", None, "10"),
    ("#### " + "1" * 40, "1" * 40, "1" * 40),
    ("#### -" + "9" * 35 + ".500", "-" + "9" * 35 + ".5", "-" + "9" * 35 + ".5"),
    ("#### -0.00", "0", "0"),
    ("\\boxed{\\text{{18}}} 5", None, "18"),
    ("\\boxed{ 12 and more", None, "12"),
]


@pytest.mark.parametrize(("completion", "strict", "flexible"), PROTOCOL_CASES)
def test_protocol_cases(completion: str, strict: str | None, flexible: str | None) -> None:
    assert extract_strict(completion) == strict
    assert extract_flexible(completion) == flexible


@pytest.mark.parametrize(
    ("completion", "number"),
    [
        ("work\n#### 18", "18"),
        ("work\n  **#### $18.00**.  \n\n", "18"),
        ("#### Step 1\nwork\n#### 18", "18"),  # a heading is no answer line
        ("work\n#### 18\nmore", None),
        ("#### 0\nwork\n#### 18", None),
        ("work\n#### 18\n#### 18", None),
        ("work\n#### 18 or 19", None),
        ("work\n#### 18 dollars", None),
        ("work. So #### 18", None),
        ("work\n\\boxed{18}", None),
        ("", None),
    ],
)
def test_answer_line(completion: str, number: str | None) -> None:
    assert answer_line(completion) == number


def test_comparison_is_exact_decimal() -> None:
    assert not same_number("1" * 40, "1" * 39 + "2")
    assert canonical(Decimal("1" * 40 + ".50")) == "1" * 40 + ".5"
    assert parse_number("-" + "1" * 30) == "-" + "1" * 30
    assert parse_gold("$" + "9" * 30 + ".0") == "9" * 30

    assert same_number("18", "18") and same_number(parse_number("$18.00"), "18")
    assert same_number(parse_number("1,080"), "1080")
    assert not same_number("-3", "3")
    assert not same_number(None, "3")
    assert not same_number("18.01", "18")
    assert grade("#### 18.0", "18", "strict")
    assert not grade("#### 3", "-3", "strict")


def test_parse_gold_forms() -> None:
    assert parse_gold("1,080") == "1080"
    assert parse_gold("$18.00") == "18"
    assert parse_gold("-3") == "-3"
    assert parse_gold("She had 5.\n#### 5") == "5"
    with pytest.raises(ValueError):
        parse_gold("no number")
    with pytest.raises(ValueError):
        parse_gold("text\n#### none")


# ------------------------------------------------------------------- property tests (hypothesis)

amounts = st.decimals(
    min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=2, allow_nan=False
)


def spellings(value: Decimal) -> list[str]:
    """Supported ways to write ``value``."""
    sign = "-" if value < 0 else ""
    mag = abs(value)
    whole, frac = f"{mag:f}".partition(".")[::2]
    frac = f".{frac}" if frac else ""
    commas = f"{int(whole):,}"
    return [
        f"{sign}{whole}{frac}",
        f"{sign}{commas}{frac}",
        f"{sign}${commas}{frac}",
        f"${sign}{whole}{frac}",
        f"{sign}{commas.replace(',', '{,}')}{frac}",
        f"{sign}{whole}{frac}0",
        f"{sign}{whole}{frac}.",
        f"{sign}{whole}{frac}%",
    ]


@given(amounts, st.sampled_from(["", "The total is ", "So: "]), st.sampled_from(["", " dollars"]))
def test_any_spelling_grades_equal(value: Decimal, prefix: str, unit: str) -> None:
    gold = canonical(value)
    for spelling in spellings(value):
        text = f"{prefix}{spelling}{unit}"
        # strict: the number directly follows "####"; words between make it no answer line
        assert grade(f"work... {prefix}\n#### {spelling}{unit}", gold, "strict"), text
        assert (extract_strict(f"work...\n#### {text}") is None) == bool(prefix), text
        assert grade(f"reasoning 1 2 3\n{text}", gold, "flexible"), text
        assert grade(f"The answer is \\boxed{{{spelling}}}", gold, "flexible"), text
        assert same_number(parse_gold(spelling), gold), spelling


@given(amounts, amounts)
def test_distinct_numbers_never_match(a: Decimal, b: Decimal) -> None:
    if a != b:
        assert not grade(f"#### {a:f}", canonical(b), "strict")


@given(st.text(max_size=300))
def test_never_crashes(text: str) -> None:
    for mode in MODES:
        grade(text, "1", mode)


# ----------------------------------------------------------- linear time on pathological input

PATHOLOGICAL = [
    "#",
    "####",
    "#### x",
    "answer is ",
    "\\boxed{",
    "answer:",
    "answer is = ",
    "{",
    "$-",
]


def min_cpu_time(fn: Callable[[str], object], text: str, runs: int = 5) -> float:
    """Process CPU time, not wall time: on a loaded machine a long run is descheduled more often
    than a short one, which inflates wall-time ratios."""
    best = float("inf")
    for _ in range(runs):
        start = time.process_time()
        fn(text)
        best = min(best, time.process_time() - start)
    return best


@pytest.mark.parametrize("unit", PATHOLOGICAL)
def test_extraction_is_linear(unit: str) -> None:
    """4x the input may cost at most ~8x the CPU time (min of 5 runs each): linear work gives
    ~4, the quadratic rescans this replaced gave ~16. A ratio, never an absolute time."""
    small, large = unit * (25_000 // len(unit)), unit * (100_000 // len(unit))
    for fn in (extract_strict, extract_flexible):
        fn(small)  # warm caches
        ratio = min_cpu_time(fn, large) / max(min_cpu_time(fn, small), 1e-6)
        assert ratio < 8, (unit, fn.__name__, ratio)


SOUP = ["####", "#### ", "answer is ", "Answer: ", "\\boxed{", "}", "{", "=", " = ", ". ", "\n"]
SOUP += [" ", "18", "-3", "$5", "1,080", "2.5", "x", "Step 2:", "**", "answer is18", "１８"]


@given(st.lists(st.sampled_from(SOUP), max_size=14))
def test_indexed_lookups_agree_with_direct_search(tokens: list[str]) -> None:
    """Past its budget the flexible scan switches from direct region searches to indexes: both
    must read every text alike."""
    text = "".join(tokens)
    direct = extract_flexible(text)
    original = grading._Scan.__init__

    def no_budget(self: grading._Scan, text: str) -> None:
        original(self, text)
        self.budget = 0

    grading._Scan.__init__ = no_budget  # type: ignore[method-assign]
    try:
        assert extract_flexible(text) == direct
    finally:
        grading._Scan.__init__ = original  # type: ignore[method-assign]


def test_answer_line_ok_needs_a_completion_that_stopped() -> None:
    """An eval completion cut off at the token limit did not end on its answer line, whatever
    its last line reads (`#### 0000…` written up to the limit)."""
    from grpo_gsm8k.grading import score_completions

    texts = ["2 + 2 = 4\n#### 4", "#### 000000000000"]
    assert score_completions(texts, "4")["answer_line_ok"] == [True, True]
    assert score_completions(texts, "4", [False, True])["answer_line_ok"] == [True, False]
