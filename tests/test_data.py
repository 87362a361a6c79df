"""`prepare` on the real GSM8K copy, the prompt template, and bad input through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from grpo_gsm8k.cli import main
from grpo_gsm8k.data import DataError, load_gsm8k_split, load_prepared
from grpo_gsm8k.prompts import chat_messages, raw_prompt
from grpo_gsm8k.runfiles import sha256_file


def rows(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.open()]


def test_prepare_matches_official_rows(prepared: Path, gsm8k_dir: Path) -> None:
    train, evals = rows(prepared / "train.jsonl"), rows(prepared / "eval.jsonl")
    assert (len(train), len(evals)) == (7473, 500)
    official = rows(gsm8k_dir / "test.jsonl")[:500]
    for mine, ref in zip(evals, official, strict=True):
        assert mine["question"] == ref["question"] and mine["answer"] == ref["answer"]
        assert mine["gold"] == ref["answer"].rsplit("####", 1)[1].strip().replace(",", "")
    assert evals[42]["id"] == "test-0042" and train[0]["id"] == "train-0000"
    assert set(train[0]) == {"id", "question", "answer", "gold"}
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert manifest["rows"] == {"train.jsonl": 7473, "eval.jsonl": 500}
    for name in ("train.jsonl", "eval.jsonl"):
        assert manifest["sha256"][name] == sha256_file(prepared / name)
    assert "grpo_gsm8k_version" in manifest and manifest["source"]


def test_prepare_eval_size_all_and_parquet(gsm8k_dir: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "src"
    src.mkdir()
    for split in ("train", "test"):
        table = pa.Table.from_pylist(rows(gsm8k_dir / f"{split}.jsonl")[:20])
        pq.write_table(table, src / f"{split}.parquet")
    assert (
        main(["prepare", "--source", str(src), "--out", str(tmp_path / "o"), "--eval-size", "all"])
        == 0
    )
    assert len(rows(tmp_path / "o" / "eval.jsonl")) == 20
    assert (
        load_prepared(tmp_path / "o" / "train.jsonl")[3].gold
        == load_gsm8k_split(str(src), "train")[3].gold
    )


def test_prompt_template() -> None:
    messages = chat_messages("How many?")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == "How many?"
    assert "####" in messages[0]["content"]
    assert raw_prompt("How many?").endswith("Question: How many?\nAnswer:")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


GOOD = '{"question": "q?", "answer": "so\\n#### 4"}\n'


@pytest.mark.parametrize(
    ("train", "message"),
    [
        (GOOD + "{not json\n", "train.jsonl:2: malformed JSON"),
        (GOOD + '{"answer": "#### 3"}\n', "train.jsonl:2: missing field 'question'"),
        (GOOD + '{"question": "q", "answer": "#### many"}\n', "train.jsonl:2: field 'answer'"),
        (GOOD + '{"question": 5, "answer": "#### 1"}\n', "train.jsonl:2: field 'question' must"),
        ("\n", "split is empty"),
    ],
)
def test_prepare_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], train: str, message: str
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    write(src / "train.jsonl", train)
    write(src / "test.jsonl", GOOD)
    out = tmp_path / "out"
    assert main(["prepare", "--source", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_missing_source_and_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_gsm8k_split(str(tmp_path / "nope"), "train")
    with pytest.raises(DataError, match="no 'test' split"):
        load_gsm8k_split(str(tmp_path), "test")


def test_cli_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    bad = write(
        tmp_path / "g.jsonl", '{"completion": "#### 3", "answer": "3"}\n{"completion": 1}\n'
    )
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
    f = write(
        tmp_path / "g.jsonl",
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


def test_load_prepared_canonicalises_or_rejects_gold(tmp_path: Path) -> None:
    row = {"id": "a", "question": "q?", "answer": "so\n#### 1,080"}
    golds = ["1,080", "$1,080.00", 1080, "1080"]
    f = write(tmp_path / "p.jsonl", "".join(json.dumps(row | {"gold": g}) + "\n" for g in golds))
    assert [e.gold for e in load_prepared(f)] == ["1080"] * 4
    bad = write(tmp_path / "b.jsonl", json.dumps(row | {"gold": "many"}) + "\n")
    with pytest.raises(DataError, match=r"b\.jsonl:1: field 'gold' is not a number"):
        load_prepared(bad)
