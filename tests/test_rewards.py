"""Reward functions: values, settings, and both completion shapes TRL passes."""

from __future__ import annotations

import pytest

from grpo_gsm8k.rewards import (
    DEFAULT_REWARDS,
    RewardSettings,
    completion_text,
    make_reward_funcs,
)

COMPLETIONS = [
    "3 + 4 = 7 apples in total, so\n#### 7",
    "The answer is 7 because three plus four is seven.",
    "#### 8",
    "",
]
GOLD = ["7"] * 4


def test_published_values() -> None:
    accuracy, fmt, length = make_reward_funcs(["accuracy", "format", "length"])
    assert [f.__name__ for f in (accuracy, fmt, length)] == ["accuracy", "format", "length"]
    assert accuracy(["p"] * 4, COMPLETIONS, gold=GOLD) == [1.0, 1.0, -1.0, -1.0]
    assert fmt(["p"] * 4, COMPLETIONS, gold=GOLD) == [0.2, -0.2, 0.2, -0.2]
    assert length(["p"] * 4, COMPLETIONS, gold=GOLD) == [0.0, 0.0, -0.5, -0.5]


def test_settings_and_chat_completions() -> None:
    settings = RewardSettings(mode="strict", correct=2.0, wrong=0.0)
    (accuracy,) = make_reward_funcs(["accuracy"], settings)
    chat = [[{"role": "assistant", "content": c}] for c in COMPLETIONS]
    assert accuracy([[{"role": "user", "content": "q"}]] * 4, chat, gold=GOLD) == [2.0, 0, 0, 0]
    assert completion_text(chat[0]) == COMPLETIONS[0]


def test_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown reward"):
        make_reward_funcs(["accuracy", "brevity"])
    with pytest.raises(ValueError, match="unknown reward setting"):
        RewardSettings.from_dict({"corect": 1})


def test_plain_string_lists_and_published_format() -> None:
    assert completion_text(["#### ", "7"]) == "#### 7"
    (fmt,) = make_reward_funcs(["format"])
    assert fmt(["p"], [["work\n", "#### 7"]], gold=["7"]) == [0.2]
    (published,) = make_reward_funcs(["format_published"])
    throwaway = "#### 0\n16 - 3 - 4 = 9 eggs, 9 * 2 = \\boxed{18}"
    assert published(["p"] * 3, [throwaway, "#### Step 2: add", "#### 7"]) == [0.2, -0.2, 0.2]
    assert fmt(["p"], [throwaway]) == [-0.2]


# ------------------------------------------------------------------------ adversarial completions

WORK = "Janet has 16 - 3 - 4 = 9 eggs left and sells them at $2 each, so she makes 9 * 2 = 18."
HONEST = f"{WORK}\n#### 18"
ADVERSARIAL = [
    ("two answer lines, the last right", f"{WORK}\n#### 9\n#### 18"),
    ("two answer lines, the last wrong", f"{WORK}\n#### 18\n#### 19"),
    ("answer line repeated", f"{WORK}\n#### 18\n#### 18\n#### 18"),
    ("throwaway #### 0, boxed answer", f"#### 0\n{WORK[:-4]} \\boxed{{18}}."),
    ("throwaway #### 0 before the answer line", f"#### 0\n{HONEST}"),
    ("throwaway #### 0 inside a line", f"So far #### 0. {HONEST}"),
    ("text after the answer line", f"{HONEST}\nI hope this helps! Let me know."),
    ("writing on to the token limit", f"{HONEST}\n" + "The answer is 18. " * 30),
    ("a later marker after the answer line", f"{HONEST}\nWait, the answer is 18."),
    ("heading read as the answer", "#### Step 18: eggs\nJanet has 9 eggs, 9 * 2 = 18 dollars."),
    ("heading, no answer line", f"#### Step 1: eggs left\n{WORK}"),
    ("hedge on the answer line", f"{WORK}\n#### 18 or 19"),
    ("two numbers on the answer line", f"{WORK}\n#### 18 19"),
    ("hedge in words, no answer line", f"{WORK} The answer is 18 or 19."),
    ("answer line with another marker on it", f"{WORK}\n#### 18 (the answer is 19)"),
    ("answer line with a unit", f"{WORK}\n#### 18 dollars"),
    ("answer line inside a sentence", f"{WORK} So the result: #### 18"),
    ("hedge on the answer line, then one line", f"{WORK}\n#### 18 or 19\nThe answer is: 18."),
    ("reason on the answer line", f"{WORK}\n#### 18 pens because 9 * 2 = 18"),
    ("reason on the answer line, then one line", f"{WORK}\n#### 18 pens because\nshe sells 9."),
    ("answer line, then a second marker line", f"{WORK}\n#### 18\n#### Step 2: done"),
    ("boxed answer only", f"{WORK[:-4]} \\boxed{{18}}."),
    ("answer only: too short", "#### 18"),
    ("spaces padding the answer line", "####" + " " * 40 + "18"),
    ("blank lines padding the answer", "\n" * 40 + "#### 18" + "\n" * 40),
    ("padding lines after the answer", "#### 18" + "\n." * 30),
    ("padding dots on the answer line", "#### 18" + " ." * 20),
    ("padding with the answer repeated", "#### 18\n" * 6),
    ("empty", ""),
    ("no number", "I am not sure how to solve this problem, sorry."),
]


def total_rewards(
    completions: list[str], gold: str, settings: RewardSettings | None = None
) -> list[float]:
    funcs = make_reward_funcs(list(DEFAULT_REWARDS), settings)
    per_func = [
        f(["p"] * len(completions), completions, gold=[gold] * len(completions)) for f in funcs
    ]
    return [round(sum(values), 6) for values in zip(*per_func, strict=True)]


@pytest.mark.parametrize(
    ("partial", "marker"), [(-0.2, -0.2), (0.0, -0.2), (0.0, -0.1)]
)  # the default, and the CPU recipe's ladders
@pytest.mark.parametrize(("name", "completion"), ADVERSARIAL, ids=[n for n, _ in ADVERSARIAL])
def test_honest_completion_gets_strictly_the_most(
    name: str, completion: str, partial: float, marker: float
) -> None:
    settings = RewardSettings(format_partial=partial, format_marker=marker)
    honest, adversarial = total_rewards([HONEST, completion], "18", settings)
    assert honest == 1.2
    assert adversarial < honest, name


def test_format_partial_is_a_ladder() -> None:
    """format_partial pays one answer line of the graded number and one line after it; repeated
    answer lines, a throwaway line and more text after the answer stay at format_bad."""
    (fmt,) = make_reward_funcs(["format"], RewardSettings(format_partial=0.0))
    completions = [
        WORK,  # no answer line
        f"{WORK}\n#### 18\n#### 18",  # repeated
        f"#### 0\n{WORK}\n\\boxed{{18}}",  # a throwaway line: not the graded number
        f"{WORK}\n#### 18\nThe answer is: 18.\n\nMore words.",  # more text after the answer
        f"{WORK}\n#### 18 or 19\nThe answer is: 18.",  # a hedged answer line, then one line
        f"{WORK}\n#### 18 pens because\nshe sells 9 * 2 = 18.",  # a reason on the answer line
        f"{WORK}\n#### 18 and maybe 19 pens",  # a hedge, nothing after it
        f"{WORK}\n#### 18\n#### Step 2: done",  # the one more line is a marker line
        f"{WORK}\n#### 18\nThe answer is: 19.",  # the one more line reads another number
        f"{WORK}\n#### 18\n\nThe answer is: 18.\n",  # one answer line, one line, a stop
        f"{WORK}\n**#### 18**\nSo she makes $18 a day.",  # an allowed spelling, one line
        f"{WORK}\n#### 18",  # the format asked for
    ]
    bad = [-0.2] * 9
    assert fmt(["p"] * 12, completions, gold=["18"] * 12) == [*bad, 0.0, 0.0, 0.2]
    # the rung below: that one answer line of the graded number, more on its line or after it
    (fmt,) = make_reward_funcs(["format"], RewardSettings(format_partial=0.0, format_marker=-0.1))
    rungs = [-0.2, -0.2, -0.2, -0.1, -0.1, -0.1, -0.1, -0.1, -0.2, 0.0, 0.0, 0.2]
    assert fmt(["p"] * 12, completions, gold=["18"] * 12) == rungs


def test_format_pays_nothing_for_a_completion_cut_off_at_the_limit() -> None:
    """A completion that reached max_completion_length tokens ended on nothing: its last line
    may read as an answer line (`#### 0000…` written up to the limit), it earns format_bad."""
    (fmt,) = make_reward_funcs(["format"], RewardSettings(format_partial=0.0), 8)
    texts = [f"{WORK}\n#### 18", f"{WORK}\n#### 18\nThe answer is: 18.", "#### 00000000"]
    stopped = [[1] * 7] * 3
    assert fmt(["p"] * 3, texts, gold=["18"] * 3, completion_ids=stopped) == [0.2, 0.0, 0.2]
    cut = [[1] * 8] * 3
    assert fmt(["p"] * 3, texts, gold=["18"] * 3, completion_ids=cut) == [-0.2, -0.2, -0.2]


def test_overlong_is_trls_soft_punishment_from_token_ids() -> None:
    """overlong: 0 up to max - cache tokens, then linearly down to -1 at the limit."""
    (overlong,) = make_reward_funcs(["overlong"], RewardSettings(overlong_cache=16), 128)
    ids = [[1] * n for n in (30, 112, 120, 128)]
    assert overlong(["p"] * 4, ["c"] * 4, completion_ids=ids) == [0.0, 0.0, -0.5, -1.0]
    with pytest.raises(ValueError, match="overlong_cache"):
        make_reward_funcs(["overlong"], RewardSettings(overlong_cache=16), 0)


@pytest.mark.parametrize(
    "answer",
    ["#### 18", "#### 18.", "#### $18.00", "**#### 18**", "####18", "#### 18  \n\n", "#### １８"],
)
def test_honest_spellings_of_the_answer_line_get_the_full_reward(answer: str) -> None:
    assert total_rewards([f"{WORK}\n{answer}"], "18") == [1.2]
    (fmt,) = make_reward_funcs(["format"])
    chat = [{"role": "assistant", "content": f"{WORK}\n{answer}"}]
    assert fmt([[{"role": "user", "content": "q"}]], [chat], gold=["18"]) == [0.2]


# ------------------------------------------------------------- the published seed rewards


def test_seed_answer_is_the_published_rule() -> None:
    """The first digit run after the first ``####``, else the last digit run anywhere."""
    from grpo_gsm8k.rewards import seed_answer

    cases = {
        "so 9 * 2 = 18\n#### 18": 18,
        "#### 0\nthen 9 * 2 = \\boxed{18}": 0,  # the first marker wins
        "#### Step 2: add 5 and 7\n#### 12": 2,  # any digits after the first ####
        "#### the end, 16 - 7 = 9": 16,
        "####\nno digit after it? 3 then 4": 3,  # the first digit run after ####, even later
        "#### none at all": None,
        "the total is 1,080 dollars": 80,  # digit runs only: commas split numbers
        "#### 1,080": 1,
        "#### -3": 3,  # signs are not read
        "#### 2.5": 2,
        "it costs 7 dollars, then 9": 9,  # no ####: the last digit run
        "no number": None,
        "": None,
    }
    assert {text: seed_answer(text) for text in cases} == cases


def test_seed_rewards_pay_what_the_published_script_paid() -> None:
    fmt, acc, length = make_reward_funcs(["format_seed", "accuracy_seed", "length_seed"])
    completions = [
        "9 * 2 = 18 so the answer is\n#### 18",  # right, with ####
        "#### Step 1: 9 eggs\n9 * 2 = 18 dollars a day",  # '####' + the first digits 1: wrong
        "She makes 9 * 2 = 18 dollars a day.",  # no ####: the last number, right
        "#### 18",  # right but short: raw length 7
        "         #### 18           \n\n\n    ",  # whitespace counts in the raw length
        "#### -3 degrees, surely",  # gold -3: signs are not read, never right
    ]
    gold = ["18", "18", "18", "18", "18", "-3"]
    prompts = ["p"] * len(completions)
    assert fmt(prompts, completions, gold=gold) == [0.2, 0.2, -0.2, 0.2, 0.2, 0.2]
    assert acc(prompts, completions, gold=gold) == [1.0, -1.0, 1.0, 1.0, 1.0, -1.0]
    assert length(prompts, completions, gold=gold) == [0.0, 0.0, 0.0, -0.5, 0.0, -0.5]
    chat = [[{"role": "assistant", "content": c}] for c in completions[:1]]
    assert acc([[{"role": "user", "content": "q"}]], chat, gold=["18"]) == [1.0]
