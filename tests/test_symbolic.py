"""`prepare --source gsm-symbolic`: the schema, every gold against the generator's own chain of
thought (read by our grader), determinism per seed, and bad options through the real CLI."""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import Path

import pytest

from grpo_gsm8k.cli import main
from grpo_gsm8k.data import load_prepared
from grpo_gsm8k.grading import grade, parse_gold, same_number
from grpo_gsm8k.runfiles import sha256_file
from grpo_gsm8k.symbolic import SUFFIX

ID = re.compile(r"symbolic-t(\d{3})-(\d{4})")


def prepare(out: Path, *args: str) -> list[dict[str, str]]:
    assert main(["prepare", "--source", "gsm-symbolic", "--out", str(out), *args]) == 0
    return [json.loads(line) for line in (out / "eval.jsonl").open(encoding="utf-8")]


def test_schema_and_manifest(tmp_path: Path) -> None:
    rows = prepare(tmp_path / "s", "--count", "40", "--seed", "3")
    assert len(rows) == 40
    for i, row in enumerate(rows):
        assert set(row) == {"id", "question", "answer", "gold"}
        match = ID.fullmatch(row["id"])
        assert match and int(match.group(2)) == i
        assert row["question"].endswith("?") or row["question"].endswith(".")
        assert "Do not include units" not in row["question"]
        assert row["answer"].rstrip().splitlines()[-1].startswith("####")
        assert "," not in row["gold"] and parse_gold(row["gold"]) == row["gold"]
    assert [e.gold for e in load_prepared(tmp_path / "s" / "eval.jsonl")] == [
        r["gold"] for r in rows
    ]
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["source"] == "gsm-symbolic"
    assert manifest["reasoning_gym_version"] == version("reasoning-gym")
    assert (manifest["seed"], manifest["difficulty"], manifest["count"]) == (3, 1.0, 40)
    assert manifest["rows"] == {"eval.jsonl": 40}
    assert manifest["sha256"]["eval.jsonl"] == sha256_file(tmp_path / "s" / "eval.jsonl")
    assert {"versions", "command", "machine", "timestamp"} <= set(manifest)
    assert manifest["command"][:3] == ["grpo-gsm8k", "prepare", "--source"]


def test_every_gold_matches_the_generator(tmp_path: Path) -> None:
    """1,000 questions (every template reasoning-gym marks usable): our grader reads each
    generator's ``#### N`` chain of thought as the gold written, which is the generator's answer."""
    from reasoning_gym.arithmetic.gsm_symbolic.gsm_symbolic import (
        GSMSymbolicDataset,
        GSMSymbolicDatasetConfig,
        tasks_ok,
    )

    rows = prepare(tmp_path / "s", "--count", "1000")
    reference = GSMSymbolicDataset(GSMSymbolicDatasetConfig(seed=0, size=1000))
    templates = set()
    for i, row in enumerate(rows):
        item = reference[i]
        template = reference.task_indices[i]
        templates.add(template)
        assert row["id"] == f"symbolic-t{template:03d}-{i:04d}"
        assert row["question"] + SUFFIX == item["question"]
        assert row["answer"] == item["metadata"]["answer_cot"]
        assert grade(item["metadata"]["answer_cot"], row["gold"], "strict")
        assert same_number(row["gold"], str(item["answer"]))
        assert same_number(row["gold"], str(item["metadata"]["answer_value"]))
    assert templates == set(tasks_ok)


def test_deterministic_per_seed(tmp_path: Path) -> None:
    prepare(tmp_path / "a", "--count", "60", "--seed", "7")
    prepare(tmp_path / "b", "--count", "60", "--seed", "7")
    prepare(tmp_path / "c", "--count", "60", "--seed", "8")
    prepare(tmp_path / "d", "--count", "25", "--seed", "7")
    a, b, c, d = ((tmp_path / x / "eval.jsonl").read_bytes() for x in "abcd")
    assert a == b
    assert a != c
    assert a.splitlines()[:25] == d.splitlines()  # a smaller count is a prefix


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "0"], "--count must be a positive number of questions, got 0"),
        (["--count", "-3"], "--count must be a positive number of questions, got -3"),
        (["--count", "many"], "--count"),
        (["--difficulty", "2"], "--difficulty 2.0: reasoning-gym"),
        (["--seed", "-1"], "--seed must be >= 0"),
        (["--eval-size", "all"], "--eval-size: GSM8K only"),
    ],
)
def test_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    out = tmp_path / "out"
    assert main(["prepare", "--source", "gsm-symbolic", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grpo-gsm8k prepare: error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_symbolic_options_need_the_symbolic_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], gsm8k_dir: Path
) -> None:
    out = tmp_path / "out"
    assert main(["prepare", "--source", str(gsm8k_dir), "--out", str(out), "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "--seed: only with --source gsm-symbolic" in err and len(err.splitlines()) == 1
    assert not out.exists()
