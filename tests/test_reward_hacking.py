"""The reward-hacking watch: text in, flags out (:mod:`grpo_gsm8k.reward_hacking`)."""

from __future__ import annotations

import pytest

from grpo_gsm8k.reward_hacking import FLAGS, completion_flags, flag_rates, no_number, text_flags


def test_clean_solution_raises_no_flag() -> None:
    text = "She sells 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = 18 dollars.\n#### 18\n"
    assert text_flags(text) == dict.fromkeys(
        [
            "multiple_answers",
            "text_after_answer",
            "repeated_lines",
            "answers_disagree",
            "no_number",
        ],
        False,
    )


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("#### 18\n#### 18", {"multiple_answers", "repeated_lines"}),
        ("#### 18\nNow the next question: a train", {"text_after_answer"}),
        ("#### 18  \n\n  ", set()),  # trailing whitespace is not text
        ("x = 3\n#### 18\nSo the answer is 20.", {"text_after_answer", "answers_disagree"}),
        ("The answer is 20.", set()),  # no '####': strict has no answer, nothing to disagree with
        ("#### 18\nThe answer is 18.", {"text_after_answer"}),  # same number: no disagreement
        ("Let x be 2.\nLet x be 2.\n#### 2", {"repeated_lines"}),
        ("ok\nok\n#### 2", set()),  # lines shorter than 4 characters do not count
        ("Let  x be 2.\nLet x be 2.  \n#### 2", {"repeated_lines"}),  # whitespace collapsed
    ],
)
def test_text_flags(text: str, flagged: set[str]) -> None:
    assert {name for name, hit in text_flags(text).items() if hit} == flagged


def test_flag_rates_skip_unknown() -> None:
    flags = [completion_flags("#### 1\n#### 1", True), completion_flags("#### 2", None)]
    assert list(flags[0]) == list(FLAGS)
    rates = flag_rates(flags)
    assert rates["multiple_answers"] == 0.5
    assert rates["hit_token_limit"] == 1.0  # the unknown one is left out
    assert flag_rates([completion_flags("x", None)])["hit_token_limit"] is None


# ------------------------------------------------------------------- collapse to non-answers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),  # an empty completion
        ("I don't know.", True),
        ("Let me think about this step by step.", True),
        ("####", True),  # the marker without a number pays nothing either
        ("The answer is 20.", False),
        ("#### 18", False),
        ("She has twelve apples, so 12.", False),
        ("It costs $3.50 in all", False),
        ("x = -4", False),
    ],
)
def test_no_number(text: str, expected: bool) -> None:
    assert no_number(text) is expected
    assert text_flags(text)["no_number"] is expected


def test_no_number_is_a_watch_flag_and_counted() -> None:
    assert "no_number" in FLAGS and list(FLAGS)[-1] == "no_number"  # existing order kept
    flags = [completion_flags(t, False) for t in ("Sorry.", "#### 3", "Hmm", "3")]
    assert [f["no_number"] for f in flags] == [True, False, True, False]
    assert flag_rates(flags)["no_number"] == 0.5
    assert flags[0]["multiple_answers"] is False  # a non-answer raises no other text flag
    assert not any(v for k, v in flags[0].items() if k != "no_number")
