"""``grpo-gsm8k compare`` through the real CLI, on eval folders written by hand: the paired
numbers, the changed questions, and the warning when B's completions collapsed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from scipy.stats import binomtest

from grpo_gsm8k.cli import main


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _fake_run(folder: Path, outcomes: list[tuple[str, bool, bool]]) -> Path:
    """An eval folder written by hand: (id, correct, format_ok) per question."""
    folder.mkdir()
    rows = [
        {
            "id": i,
            "question": f"q {i}",
            "gold": "1",
            "completions": [f"answer {i} {ok}"],
            "pred_strict": ["1" if ok else "2"],
            "correct_strict": [ok],
            "pred_flexible": ["1" if ok else "2"],
            "correct_flexible": [ok],
            "format_ok": [fmt],
        }
        for i, ok, fmt in outcomes
    ]
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A: right on q0-q4; B: right on q2-q9 (fixed 5, broken 2); q10 only in A
    a = _fake_run(tmp_path / "A", [(f"q{i}", i < 5, i % 2 == 0) for i in range(11)])
    b = _fake_run(tmp_path / "B", [(f"q{i}", i >= 2, True) for i in range(10)])
    code, stdout, _ = run_cli(["compare", str(a), str(b)], capsys)
    assert code == 0
    assert "McNemar" in stdout
    result = json.loads((b / "compare-A" / "compare.json").read_text())
    assert result["n_common"] == 10
    strict = result["metrics"]["accuracy_strict"]
    assert (strict["fixed"], strict["broken"]) == (5, 2)
    assert strict["rate_a"] == pytest.approx(0.5)
    assert strict["rate_b"] == pytest.approx(0.8)
    assert strict["diff"] == pytest.approx(0.3)
    assert strict["mcnemar_p"] == pytest.approx(binomtest(5, 7, 0.5).pvalue)
    assert strict["diff_ci"][0] < 0.3 < strict["diff_ci"][1]
    fmt = result["metrics"]["format"]
    assert (fmt["fixed"], fmt["broken"]) == (5, 0)
    changed = read_rows(b / "compare-A" / "compare.jsonl")
    assert sorted(r["id"] for r in changed) == ["q0", "q1", "q5", "q6", "q7", "q8", "q9"]
    assert {r["change"]["accuracy_strict"] for r in changed if r["id"] in ("q0", "q1")} == {
        "broken"
    }
    assert all(r["completion_a"] and r["completion_b"] for r in changed)
    assert "stopped" not in result["metrics"]  # these runs record no truncation


def test_compare_reports_stopping_and_the_answer_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folders = []
    for name, truncated in (("A", [True, True, False]), ("B", [False, False, False])):
        folder = _fake_run(tmp_path / name, [(f"q{i}", True, True) for i in range(3)])
        rows = read_rows(folder / "samples.jsonl")
        for row, t in zip(rows, truncated, strict=True):
            row["truncated"], row["answer_line_ok"] = [t], [not t]
        (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        folders.append(folder)
    code, stdout, _ = run_cli(["compare", *map(str, folders)], capsys)
    assert code == 0 and "stopped" in stdout
    metrics = json.loads((folders[1] / "compare-A" / "compare.json").read_text())["metrics"]
    assert (metrics["stopped"]["rate_a"], metrics["stopped"]["rate_b"]) == (pytest.approx(1 / 3), 1)
    assert (metrics["answer_line"]["fixed"], metrics["answer_line"]["broken"]) == (2, 0)


def test_compare_without_common_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _fake_run(tmp_path / "A", [("x", True, True)])
    b = _fake_run(tmp_path / "B", [("y", True, True)])
    code, _, err = run_cli(["compare", str(a), str(b)], capsys)
    assert code == 2
    assert "share no question ids" in err
    code, _, err = run_cli(["compare", str(tmp_path / "nope"), str(b)], capsys)
    assert code == 2
    assert "no such eval folder" in err


def _run_with(
    folder: Path,
    correct: list[bool],
    texts: list[str],
    tokens: list[int],
    truncated: list[bool],
    format_ok: list[bool] | None = None,
) -> Path:
    """An eval folder written by hand, with completions, token counts and truncation (format_ok:
    as correct unless given)."""
    formats = format_ok or correct
    pairs = zip(correct, formats, strict=True)
    outcomes = [(f"q{i}", ok, fmt) for i, (ok, fmt) in enumerate(pairs)]
    _fake_run(folder, outcomes)
    rows = read_rows(folder / "samples.jsonl")
    for row, text, n, cut in zip(rows, texts, tokens, truncated, strict=True):
        row["completions"], row["tokens"], row["truncated"] = [text], [n], [cut]
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_compare_warns_when_b_collapsed_to_short_non_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A: long, mostly truncated, right on q0-q3; B: stops at once with no number, never right
    n = 20
    a = _run_with(
        tmp_path / "A", [i < 4 for i in range(n)], [f"step {i} ... #### {i}" for i in range(n)],
        [200] * n, [i >= 4 for i in range(n)],
    )  # fmt: skip
    b = _run_with(tmp_path / "B", [False] * n, ["I am done."] * n, [4] * n, [False] * n)
    code, stdout, _ = run_cli(["compare", str(a), str(b)], capsys)
    assert code == 0
    result = json.loads((b / "compare-A" / "compare.json").read_text())
    stopped = result["metrics"]["stopped"]
    assert (stopped["rate_a"], stopped["rate_b"]) == (pytest.approx(0.2), 1)  # "stopped" rose
    warnings = result["warnings"]
    assert len(warnings) == 2
    assert "4 tokens on average against A's 200" in warnings[0]
    assert "20 of B's 20 completions (100.0%) hold no number" in warnings[1]
    lines = stdout.splitlines()
    table_end = max(i for i, line in enumerate(lines) if line.startswith("└"))
    assert lines[table_end + 1 : table_end + 3] == [f"warning: {w}" for w in warnings]
    assert lines[table_end + 3].startswith("wrote ")


def test_compare_shorter_but_better_is_no_collapse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # B is a third as long as A, but significantly more accurate, and every answer has a number
    n = 30
    a = _run_with(
        tmp_path / "A", [i < 3 for i in range(n)], ["long ... #### 2"] * n, [300] * n, [True] * n
    )
    b = _run_with(
        tmp_path / "B", [i < 27 for i in range(n)], ["#### 1"] * n, [100] * n, [False] * n
    )
    code, stdout, _ = run_cli(["compare", str(a), str(b)], capsys)
    assert code == 0
    result = json.loads((b / "compare-A" / "compare.json").read_text())
    assert result["metrics"]["accuracy_strict"]["diff_ci"][0] > 0
    assert result["warnings"] == []
    assert "no win on its own" not in stdout


def test_compare_warns_when_b_guesses_in_the_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # B learned the answer line (0 -> 20 of 20) in a fifth of A's tokens, but solves 4 against
    # A's 3: the format gain is significant, accuracy's is not (what recipes/cpu-smollm2-accuracy
    # measured: 207 -> 40 tokens, accuracy 2.2% -> 3.0%, p = 0.215)
    n = 20
    a = _run_with(
        tmp_path / "A", [i < 3 for i in range(n)], ["working ... so 1"] * n, [200] * n,
        [False] * n, format_ok=[False] * n,
    )  # fmt: skip
    b = _run_with(
        tmp_path / "B", [i < 4 for i in range(n)], ["Restated.\n#### 1"] * n, [40] * n,
        [False] * n, format_ok=[True] * n,
    )  # fmt: skip
    code, stdout, _ = run_cli(["compare", str(a), str(b)], capsys)
    assert code == 0
    result = json.loads((b / "compare-A" / "compare.json").read_text())
    assert result["metrics"]["format"]["diff_ci"][0] > 0
    assert result["metrics"]["accuracy_flexible"]["diff_ci"][0] <= 0
    assert result["warnings"] == [
        "B's completions are 40 tokens on average against A's 200, with no significant gain in "
        "accuracy (flexible): B may write the answer line without working the problem out, so its "
        "format gain is no win on its own"
    ]
    assert f"warning: {result['warnings'][0]}" in stdout


def test_compare_warns_when_b_is_truncated_more(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # B writes the format more often but runs into the token limit on 18 of 20 (A: 2 of 20)
    n = 20
    a = _run_with(
        tmp_path / "A", [False] * n, ["2 + 2 = 4"] * n, [90] * n, [i < 2 for i in range(n)]
    )
    b = _run_with(
        tmp_path / "B",
        [False] * n,
        ["#### 4 and on and on"] * n,
        [128] * n,
        [i < 18 for i in range(n)],
    )
    code, stdout, _ = run_cli(["compare", str(a), str(b)], capsys)
    assert code == 0
    result = json.loads((b / "compare-A" / "compare.json").read_text())
    assert result["warnings"] == [
        "B runs into the token limit more often than A (stopped 90.0% -> 10.0%): its completions "
        "are cut off more, whatever else it gained"
    ]
    assert f"warning: {result['warnings'][0]}" in stdout
