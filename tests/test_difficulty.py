"""`grpo-gsm8k filter`: a sampling eval's run folder, written by the real eval (only the model is
a stand-in that answers as planned) over real GSM8K train rows, filtered into the questions the
model solved sometimes; the output is a prepared file that training's loader reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from grpo_gsm8k.cli import main
from grpo_gsm8k.data import load_prepared
from grpo_gsm8k.generation import Completion, SamplingSettings
from grpo_gsm8k.prompts import raw_prompt
from grpo_gsm8k.runfiles import sha256_file

# per question, its K completions: R right ('#### gold'), W wrong ('#### gold' with a 1 appended),
# F right for flexible grading only (the number without a '#### ' line)
PATTERNS = ["WWWW", "WWWR", "RRRR", "RWRW", "FFWW", "RRRW", "WWWW", "RRRR", "FRRR", "WRWW"]
FLEXIBLE = [0, 1, 4, 2, 2, 3, 0, 4, 4, 1]  # correct completions per question
STRICT = [0, 1, 4, 2, 0, 3, 0, 4, 3, 1]


def completion(gold: str, verdict: str) -> str:
    return {"R": f"So #### {gold}", "W": f"So #### {gold}1", "F": f"The answer is {gold}."}[verdict]


class PlannedBackend:
    """A backend that answers each rendered prompt with its planned completions."""

    name, dtype, tokenizer = "hf", "float32", None

    def __init__(self, plan: dict[str, list[str]]) -> None:
        self.plan = plan

    def generate(self, prompts: list[str], sampling: SamplingSettings) -> list[list[Completion]]:
        assert all(len(self.plan[p]) == sampling.n for p in prompts)
        return [[Completion(text, 5, False) for text in self.plan[p]] for p in prompts]

    def close(self) -> None:
        pass


def sampling_run(
    monkeypatch: pytest.MonkeyPatch,
    data: Path,
    out: Path,
    patterns: list[str],
    greedy: bool = False,
) -> Path:
    """``grpo-gsm8k eval`` of the first ``len(patterns)`` questions of ``data`` with
    ``--samples K`` (K: the patterns' length; none with ``greedy``), the model answering as
    planned: every file of the run folder is the real eval's."""
    import transformers

    from grpo_gsm8k import generation, hardware, models
    from grpo_gsm8k.evaluation import evaluate

    examples = load_prepared(data)[: len(patterns)]
    plan = {
        raw_prompt(e.question): [completion(e.gold, v) for v in pattern]
        for e, pattern in zip(examples, patterns, strict=True)
    }
    model = out.parent / "planned-model"
    model.mkdir(parents=True, exist_ok=True)
    (model / "config.json").write_text("{}")
    resolved = models.ResolvedModel("planned", str(model), "local")
    machine = hardware.Machine(None, "DEFAULT", ())
    with monkeypatch.context() as m:
        m.setattr(models, "resolve_model", lambda *a, **k: resolved)
        m.setattr(transformers.AutoTokenizer, "from_pretrained", staticmethod(lambda *a, **k: None))
        m.setattr(evaluate, "choose", lambda b, d: hardware.choose(b, d, machine=machine))
        m.setattr(generation, "load_backend", lambda *a, **k: PlannedBackend(plan))
        k = len(patterns[0])
        sampling = [] if greedy else ["--samples", str(k), "--temperature", "0.7"]
        assert main(
            ["eval", "planned", "--data", str(data), "--limit", str(len(patterns)),
             "--backend", "hf", "--dtype", "float32", "--prompt", "raw", "--max-new-tokens",
             "16", *sampling, "--out", str(out)]
        ) == 0  # fmt: skip
    return out


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().split("\n") if line]  # not at U+2028


@pytest.fixture(scope="module")
def train_file(prepared: Path) -> Path:
    return prepared / "train.jsonl"


def test_filter_keeps_the_questions_solved_sometimes(
    train_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = sampling_run(monkeypatch, train_file, tmp_path / "passk", PATTERNS)
    samples = rows(run / "samples.jsonl")
    assert [sum(r["correct_flexible"]) for r in samples] == FLEXIBLE
    assert [sum(r["correct_strict"]) for r in samples] == STRICT

    out = tmp_path / "solved-sometimes"
    assert main(["filter", str(run), "--out", str(out)]) == 0
    kept = [i for i, c in enumerate(FLEXIBLE) if 0 < c < 4]
    prepared_rows = rows(train_file)
    assert rows(out / "train.jsonl") == [prepared_rows[i] for i in kept]  # same rows, same order
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {
        "questions": 10, "kept": 5, "dropped_never_solved": 2, "dropped_always_solved": 3,
        "dropped_other": 0,
    }  # fmt: skip
    assert manifest["questions_by_correct"] == {"0": 2, "1": 2, "2": 2, "3": 1, "4": 3}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["pass@k"]["pass@4"]["flexible"] == pytest.approx(8 / 10)  # c > 0
    fil = manifest["filter"]
    assert (fil["run"], fil["model"], fil["k"], fil["mode"]) == (str(run), "planned", 4, "flexible")
    assert (fil["min_correct"], fil["max_correct"]) == (1, 3)
    assert fil["model_sha256"] == summary["identity"]["model_sha256"]
    assert manifest["source"] == str(train_file) and manifest["rows"] == {"train.jsonl": 5}
    assert manifest["sha256"] == {
        "source": sha256_file(train_file),
        "samples.jsonl": sha256_file(run / "samples.jsonl"),
        "train.jsonl": sha256_file(out / "train.jsonl"),
    }
    assert manifest["command"] == ["grpo-gsm8k", "filter", str(run), "--out", str(out)]
    assert {"versions", "machine", "timestamp", "data"} <= set(manifest)
    assert manifest["data"]["source"]["sha256"] == sha256_file(train_file)
    # training's loader reads it: the kept questions, as prepared
    examples = load_prepared(out / "train.jsonl")
    assert [e.id for e in examples] == [f"train-{i:04d}" for i in kept]

    # deterministic: the same command gives the same train.jsonl and the same manifest but for
    # when and where it ran
    again = tmp_path / "again"
    assert main(["filter", str(run), "--out", str(again)]) == 0
    assert (again / "train.jsonl").read_bytes() == (out / "train.jsonl").read_bytes()
    other = json.loads((again / "manifest.json").read_text())
    volatile = {"timestamp", "command"}
    assert {k: v for k, v in other.items() if k not in volatile} == {
        k: v for k, v in manifest.items() if k not in volatile
    }


def test_filter_bounds_and_grading_mode(
    train_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = sampling_run(monkeypatch, train_file, tmp_path / "passk", PATTERNS)

    def kept(*options: str) -> tuple[list[int], dict[str, int]]:
        out = tmp_path / "out"
        assert main(["filter", str(run), "--out", str(out), *options]) == 0
        manifest = json.loads((out / "manifest.json").read_text())
        return [int(r["id"].split("-")[1]) for r in rows(out / "train.jsonl")], manifest["counts"]

    ids, counts = kept("--mode", "strict")
    assert ids == [i for i, c in enumerate(STRICT) if 0 < c < 4] == [1, 3, 5, 8, 9]
    assert (counts["dropped_never_solved"], counts["dropped_always_solved"]) == (3, 2)
    ids, counts = kept("--min-correct", "2", "--max-correct", "4")
    assert ids == [i for i, c in enumerate(FLEXIBLE) if 2 <= c <= 4]
    assert counts == {
        "questions": 10, "kept": 6, "dropped_never_solved": 2, "dropped_always_solved": 0,
        "dropped_other": 2,
    }  # fmt: skip
    assert kept("--min_correct=0", "--max_correct=4")[0] == list(range(10))
    assert kept("--max-correct", "1")[0] == [1, 9]


def test_filter_finds_a_relative_data_path_or_takes_data(
    train_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "work" / "data").mkdir(parents=True)
    lines = train_file.read_text().split("\n")[:20]
    (tmp_path / "work" / "data" / "train.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path / "work")  # the eval records data/train.jsonl as given
    sampling_run(monkeypatch, Path("data/train.jsonl"), Path("runs/passk"), PATTERNS[:4])
    assert main(["filter", "runs/passk", "--out", "data/solved"]) == 0
    assert len(rows(Path("data/solved/train.jsonl"))) == 2
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["filter", "work/runs/passk", "--out", "o"]) == 2
    err = capsys.readouterr().err
    assert "field 'data.path' is data/train.jsonl, not found from here" in err
    assert "pass --data FILE" in err and not Path("o").exists()
    assert main(["filter", "work/runs/passk", "--out", "o", "--data", str(train_file)]) == 2
    assert "the file changed since the eval" in capsys.readouterr().err  # another file
    argv = ["filter", "work/runs/passk", "--out", "o", "--data", "work/data/train.jsonl"]
    assert main(argv) == 0
    assert Path("o/train.jsonl").read_bytes() == Path("work/data/solved/train.jsonl").read_bytes()
