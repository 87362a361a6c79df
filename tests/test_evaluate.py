"""``grpo-gsm8k eval`` and ``grade`` through the real CLI, on real GSM8K rows and the embedded
model (HF backend; one slow vLLM test); opening a run folder (start, resume, refuse) without a
model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from grpo_gsm8k.cli import main
from grpo_gsm8k.grading import score
from grpo_gsm8k.prompts import render_prompt
from grpo_gsm8k.runfiles import sha256_file

TOKENS = "48"  # new tokens per completion: enough for a few sentences, keeps the tests quick


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def hf_run(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A greedy HF eval of the embedded model on the first 4 eval questions."""
    out = tmp_path_factory.mktemp("eval") / "hf"
    code = main(
        [
            "eval", "smollm2-135m", "--data", str(prepared / "eval.jsonl"), "--limit", "4",
            "--backend", "hf", "--max-new-tokens", TOKENS, "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    return out


def test_eval_hf_writes_samples_and_summary(hf_run: Path, prepared: Path) -> None:
    from transformers import AutoTokenizer

    summary = json.loads((hf_run / "summary.json").read_text())
    rows = read_rows(hf_run / "samples.jsonl")
    assert [r["id"] for r in rows] == ["test-0000", "test-0001", "test-0002", "test-0003"]
    assert summary["n"] == 4
    assert summary["backend"] == "hf"
    assert summary["model"] == "smollm2-135m"
    assert Path(summary["model_path"], "config.json").is_file()
    assert summary["prompt_style"] == "chat"
    assert summary["decoding"]["greedy"] is True
    assert summary["decoding"]["max_new_tokens"] == int(TOKENS)
    assert summary["data"]["sha256"] == sha256_file(prepared / "eval.jsonl")
    assert summary["versions"]["torch"] and summary["versions"]["transformers"]
    assert summary["command"][:2] == ["grpo-gsm8k", "eval"]
    template = summary["prompt_template"]
    assert template["style"] == "chat" and len(template["chat_template_sha256"]) == 64
    assert summary["resumed_rows"] == 0
    assert summary["model_load_s"] > 0 and summary["generation_s"] > 0
    assert summary["generated_tokens_per_s"] > 0 and summary["prompts_per_s"] > 0
    for mode in ("strict", "flexible"):
        acc = summary["accuracy"][mode]
        lo, hi = summary["ci95"][mode]
        assert lo <= acc <= hi
        assert acc == sum(r[f"correct_{mode}"][0] for r in rows) / 4
    assert summary["format_rate"] == sum(r["format_ok"][0] for r in rows) / 4
    assert len(summary["format_ci95"]) == 2
    assert 0 < summary["mean_completion_tokens"] <= int(TOKENS)
    assert 0 <= summary["truncation_rate"] <= 1
    assert "pass@k" not in summary

    tokenizer = AutoTokenizer.from_pretrained(summary["model_path"])
    for row in rows:
        assert row["prompt"] == render_prompt(row["question"], tokenizer, "chat")
        assert len(row["completions"]) == 1
        for key in ("pred_strict", "correct_strict", "pred_flexible", "correct_flexible"):
            assert len(row[key]) == 1
        assert row["tokens"][0] <= int(TOKENS)
        assert row["truncated"][0] == (row["tokens"][0] == int(TOKENS))
        assert row["gold"] and row["question"]
    # score(), used by the in-training eval, agrees with the summary
    s = score([r["completions"][0] for r in rows], [r["gold"] for r in rows])
    assert s["accuracy_strict"] == summary["accuracy"]["strict"]
    assert s["accuracy_flexible"] == summary["accuracy"]["flexible"]
    assert s["format_rate"] == summary["format_rate"]


def test_score() -> None:
    s = score(["so 16 - 3 - 4 = 9\n#### 18", "The answer is 3.", "no idea"], ["18", "3", "5"])
    assert s == {
        "accuracy_strict": pytest.approx(1 / 3),
        "accuracy_flexible": pytest.approx(2 / 3),
        "format_rate": pytest.approx(1 / 3),
        "n": 3,
    }


def test_eval_resumes_after_interruption(
    hf_run: Path, prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    shutil.copytree(hf_run, out)
    lines = (out / "samples.jsonl").read_text().splitlines(keepends=True)
    # two finished rows and a torn third one, as if killed while writing; no summary yet
    (out / "samples.jsonl").write_text("".join(lines[:2]) + lines[2][:40])
    (out / "summary.json").unlink()
    argv = [
        "eval", "smollm2-135m", "--data", str(prepared / "eval.jsonl"), "--limit", "4",
        "--backend", "hf", "--max-new-tokens", TOKENS, "--out", str(out),
    ]  # fmt: skip
    code, stdout, _ = run_cli([*argv, "--chunk-size", "1"], capsys)
    assert code == 0
    assert "resuming, 2 questions done, 2 to go" in stdout
    assert "3/4 questions done" in stdout and "4/4 questions done" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 4
    assert summary["resumed_rows"] == 2
    rows = read_rows(out / "samples.jsonl")
    assert [r["id"] for r in rows] == ["test-0000", "test-0001", "test-0002", "test-0003"]
    assert rows[:2] == [json.loads(line) for line in lines[:2]]

    # finished: nothing is generated again, the summary is reprinted
    code, stdout, _ = run_cli(argv, capsys)
    assert code == 0
    assert "already complete (4 questions)" in stdout

    # other decoding settings in the same folder: refused
    code, _, err = run_cli([*argv[:-4], "--max-new-tokens", "16", "--out", str(out)], capsys)
    assert code == 2
    assert "other settings (decoding differ)" in err


def test_eval_sampling_reports_pass_and_maj_at_k(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "eval", "smollm2-135m", "--data", str(prepared / "eval.jsonl"), "--limit", "2",
        "--backend", "hf", "--max-new-tokens", "32", "--out", str(tmp_path / "s"),
        "--samples", "3", "--temperature", "0.8", "--top-p", "0.95", "--seed", "1",
    ]  # fmt: skip
    code, stdout, _ = run_cli(argv, capsys)
    assert code == 0, stdout
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    rows = read_rows(tmp_path / "s" / "samples.jsonl")
    assert summary["samples_per_question"] == 3
    assert summary["decoding"] == {
        "max_new_tokens": 32, "n": 3, "temperature": 0.8, "top_p": 0.95, "seed": 1,
        "greedy": False,
    }  # fmt: skip
    assert set(summary["pass@k"]) == {"pass@1", "pass@2", "pass@3"}
    assert set(summary["maj@k"]) == {"maj@1", "maj@2", "maj@3"}
    assert all(len(r["completions"]) == 3 and len(r["tokens"]) == 3 for r in rows)
    mean = sum(sum(r["correct_flexible"]) for r in rows) / 6
    assert summary["accuracy"]["flexible"] == pytest.approx(mean)
    assert summary["pass@k"]["pass@1"]["flexible"] == pytest.approx(mean)
    any_right = sum(any(r["correct_flexible"]) for r in rows) / 2
    assert summary["pass@k"]["pass@3"]["flexible"] == pytest.approx(any_right)
    assert "pass@3" in stdout


def _bad(argv: list[str], capsys: pytest.CaptureFixture[str], expected: str) -> None:
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("grpo-gsm8k eval: error: ")
    assert expected in lines[0]
    assert "Traceback" not in err


def test_eval_bad_input(prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data", str(prepared / "eval.jsonl"), "--out", str(tmp_path / "x")]
    _bad(["eval", str(tmp_path / "no-such-model"), *data], capsys, "no such model folder")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    _bad(["eval", "smollm2-135m", "--data", str(empty)], capsys, "no rows")
    _bad(["eval", "smollm2-135m", *data, "--samples", "0"], capsys, "--samples must be at least 1")
    _bad(["eval", "smollm2-135m", *data, "--temperature", "0.7"], capsys, "need --samples")
    _bad(["eval", "smollm2-135m", *data, "--top-p", "0.9"], capsys, "need --samples")
    assert not (tmp_path / "x" / "samples.jsonl").exists()


# ------------------------------------------------------------------------------------- grade


def test_cli_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "g.jsonl"
    bad.write_text('{"completion": "#### 3", "answer": "3"}\n{"completion": 1}\n')
    proc = subprocess.run(
        [sys.executable, "-m", "grpo_gsm8k.cli", "grade", str(bad)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""  # nothing half-written
    assert (
        proc.stderr.strip()
        == f"grpo-gsm8k grade: error: {bad}:2: field 'completion' must be a string"
    )


def test_grade_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "g.jsonl"
    f.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"completion": "#### 11\nno, the answer is 18", "answer": "x\n#### 18", "id": 1},
                {"completion": "It is $1,080.", "answer": "1,080"},
                {"completion": "#### -3", "answer": "3"},
            ]
        ),
    )
    assert main(["grade", str(f)]) == 0
    out, err = capsys.readouterr()
    graded = [json.loads(line) for line in out.splitlines()]
    assert [g["pred_strict"] for g in graded] == ["11", None, "-3"]
    assert [g["correct_flexible"] for g in graded] == [True, True, False]
    assert graded[0]["id"] == 1
    assert "graded 3 rows" in err and "strict 0.0%" in err and "flexible 66.7%" in err
    assert main(["grade", str(f), "--mode", "strict"]) == 0
    assert "pred_flexible" not in capsys.readouterr().out
    assert main(["grade", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: file not found" in capsys.readouterr().err


# --------------------------------------------------------------------------------------- vLLM


@pytest.mark.slow
@pytest.mark.vllm
def test_eval_vllm_agrees_with_hf(hf_run: Path, prepared: Path, tmp_path: Path) -> None:
    pytest.importorskip("vllm")
    out = tmp_path / "vllm"
    code = main(
        [
            "eval", "smollm2-135m", "--data", str(prepared / "eval.jsonl"), "--limit", "4",
            "--backend", "vllm", "--max-new-tokens", TOKENS, "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == "vllm"
    assert summary["n"] == 4
    assert summary["versions"]["vllm"]
    vllm_rows = read_rows(out / "samples.jsonl")
    hf_rows = read_rows(hf_run / "samples.jsonl")
    assert [r["prompt"] for r in vllm_rows] == [r["prompt"] for r in hf_rows]
    for row in vllm_rows:
        assert 0 < row["tokens"][0] <= int(TOKENS)
        assert row["truncated"][0] == (row["tokens"][0] == int(TOKENS))
    # same tokens in, greedy: the completions start the same (float differences may diverge later)
    same_start = sum(
        v["completions"][0][:30] == h["completions"][0][:30]
        for v, h in zip(vllm_rows, hf_rows, strict=True)
    )
    assert same_start >= 2
