"""`prepare` on the real GSM8K copy, reading prepared files back, and bad input through the real
CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grpo_gsm8k.cli import main
from grpo_gsm8k.data import DataError, load_gsm8k_split, load_prepared
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


def test_load_prepared_canonicalises_or_rejects_gold(tmp_path: Path) -> None:
    row = {"id": "a", "question": "q?", "answer": "so\n#### 1,080"}
    golds = ["1,080", "$1,080.00", 1080, "1080"]
    lines = [json.dumps(row | {"id": f"a{k}", "gold": g}) + "\n" for k, g in enumerate(golds)]
    f = write(tmp_path / "p.jsonl", "".join(lines))
    assert [e.gold for e in load_prepared(f)] == ["1080"] * 4
    bad = write(tmp_path / "b.jsonl", json.dumps(row | {"gold": "many"}) + "\n")
    with pytest.raises(DataError, match=r"b\.jsonl:1: field 'gold' is not a number"):
        load_prepared(bad)


def test_load_prepared_refuses_duplicate_ids(tmp_path: Path) -> None:
    rows = [{"id": i, "question": "q?", "answer": "#### 1"} for i in ("a", "b", "a")]
    f = write(tmp_path / "dup.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"dup\.jsonl:3: duplicate id 'a' \(also on line 1\)"):
        load_prepared(f)
