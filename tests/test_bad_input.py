"""Every bad input a user can give is one clear line (exit 2, no traceback, nothing half-written)
or the right behaviour; each case is a row here (README, Bad input), through the real CLI."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

from grpo_gsm8k.cli import main

CPU_RECIPE = str(REPO / "recipes" / "cpu-smollm2.yaml")


def one_error_line(code: int, err: str, command: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"grpo-gsm8k {command}: error: "), err
    return lines[0]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()  # only this command's output: not e.g. a model conversion's progress bars
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def cli(
    argv: list[str], stdin: bytes | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "grpo_gsm8k.cli", *argv],
        input=stdin,
        capture_output=True,
        timeout=timeout,
    )


# ----------------------------------------------------------------------------------- prepare


def test_missing_relative_folder_is_not_sent_to_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fx").mkdir()
    t0 = time.perf_counter()
    code, _, err = run(["prepare", "--source", "fx/nonexistent", "--out", "o"], capsys)
    assert "fx/nonexistent: no such file or folder" in one_error_line(code, err, "prepare")
    assert time.perf_counter() - t0 < 5  # no HTTP retries
    assert not (tmp_path / "o").exists()


def test_parquet_that_is_not_parquet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for split in ("train", "test"):
        (src / f"{split}.parquet").write_bytes(b"not a parquet file at all")
    code, _, err = run(["prepare", "--source", str(src), "--out", str(tmp_path / "o")], capsys)
    assert "train.parquet: not a readable parquet file" in one_error_line(code, err, "prepare")


def test_out_that_is_a_file_or_cannot_be_made(
    gsm8k_dir: Path,
    prepared: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, _, err = run(["prepare", "--source", str(gsm8k_dir), "--out", str(afile)], capsys)
    assert "exists and is not a folder" in one_error_line(code, err, "prepare")
    code, _, err = run(["prepare", "--source", str(gsm8k_dir), "--out", "/proc/x"], capsys)
    assert "cannot create the output folder" in one_error_line(code, err, "prepare")
    # an empty model cache, as on a clean clone: the output folder is refused before the
    # embedded model is converted (which prints progress bars and takes seconds)
    monkeypatch.setenv("GRPO_GSM8K_CACHE", str(tmp_path / "empty-cache"))
    data = ["--data", str(prepared / "eval.jsonl"), "--limit", "1", "--backend", "hf"]
    code, _, err = run(["eval", "smollm2-135m", *data, "--out", str(afile)], capsys)
    assert "exists and is not a folder" in one_error_line(code, err, "eval")
    code, _, err = run(["eval", "smollm2-135m", *data, "--out", "/proc/x"], capsys)
    assert "cannot create the output folder" in one_error_line(code, err, "eval")
    assert not (tmp_path / "empty-cache").exists()
    run_dir = _fake_run(tmp_path / "A")
    code, _, err = run(["compare", str(run_dir), str(run_dir), "--out", str(afile)], capsys)
    assert "exists and is not a folder" in one_error_line(code, err, "compare")
    assert afile.read_text() == "x"


def test_eval_size_beyond_the_test_split_and_extra_files(
    gsm8k_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    code, _, err = run(
        ["prepare", "--source", str(gsm8k_dir), "--out", str(out), "--eval-size", "99999"], capsys
    )
    assert "the test split has 1319 questions" in one_error_line(code, err, "prepare")
    assert not out.exists()
    out.mkdir()
    (out / "old.jsonl").write_text("{}\n")
    code, stdout, _ = run(
        ["prepare", "--source", str(gsm8k_dir), "--out", str(out), "--eval-size", "8"], capsys
    )
    assert code == 0
    assert "also holds old.jsonl" in stdout
    assert json.loads((out / "manifest.json").read_text())["eval_split"] == "test[:8]"


# ------------------------------------------------------------------------------------- grade


def test_grade_binary_file_and_stdin(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(random.Random(0).randbytes(4096))
    proc = cli(["grade", str(garbage)])
    assert "not UTF-8 text" in one_error_line(proc.returncode, proc.stderr.decode(), "grade")
    assert proc.stdout == b""
    row = {"completion": "so #### 18", "answer": "18"}
    proc = cli(["grade", "-"], stdin=(json.dumps(row) + "\n").encode())
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["correct_strict"] is True


# -------------------------------------------------------------------------------------- eval


def test_eval_nan_temperature_writes_nothing(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    for flag, value in [("--temperature", "nan"), ("--top-p", "nan"), ("--temperature", "inf")]:
        code, _, err = run(
            ["eval", "smollm2-135m", "--data", str(prepared / "eval.jsonl"), "--samples", "2",
             flag, value, "--out", str(out)],
            capsys,
        )  # fmt: skip
        assert flag in one_error_line(code, err, "eval")
        assert not out.exists()


def _model_folder(tmp_path: Path, name: str, config: str | None, tokenizer_from: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for f in Path(tokenizer_from).glob("tokenizer*"):
        shutil.copy(f, folder / f.name)
    if config is not None:
        (folder / "config.json").write_text(config)
    return folder


def test_broken_model_folders(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from grpo_gsm8k.models import resolve_model

    good = resolve_model("smollm2-135m").path
    cases = {
        "empty-config": ("{}", "missing field 'model_type'"),
        "bad-json": ("{not json", "malformed JSON"),
        "no-weights": ((Path(good) / "config.json").read_text(), "no model weights"),
    }
    for name, (config, message) in cases.items():
        model = _model_folder(tmp_path, name, config, good)
        out = tmp_path / f"out-{name}"
        code, _, err = run(
            ["eval", str(model), "--data", str(prepared / "eval.jsonl"), "--limit", "1",
             "--backend", "hf", "--out", str(out)],
            capsys,
        )  # fmt: skip
        assert message in one_error_line(code, err, "eval")
        assert not (out / "run.json").exists()


# ----------------------------------------------------------------------------------- compare


def _fake_run(folder: Path) -> Path:
    folder.mkdir()
    row = {
        "id": "q0",
        "completions": ["#### 1"],
        "correct_strict": [True],
        "correct_flexible": [True],
        "format_ok": [True],
    }
    (folder / "samples.jsonl").write_text(json.dumps(row) + "\n")
    return folder


def test_compare_warns_on_unfinished_and_identical_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _fake_run(tmp_path / "A")
    code, stdout, _ = run(["compare", str(a), str(a), "--out", str(tmp_path / "c")], capsys)
    assert code == 0
    assert "are the same run" in stdout
    assert "has no summary.json" in stdout


# ------------------------------------------------------------------------------------ filter


def test_filter_refuses_runs_it_cannot_use(
    prepared: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from test_difficulty import PATTERNS, sampling_run

    data = tmp_path / "data" / "train.jsonl"
    data.parent.mkdir()
    shutil.copy(prepared / "train.jsonl", data)
    out = tmp_path / "out"

    def refused(*argv: str) -> str:
        code, _, err = run(["filter", *argv, "--out", str(out)], capsys)
        assert not out.exists()
        return one_error_line(code, err, "filter")

    assert f"{tmp_path / 'nowhere'}: no such eval folder" in refused(str(tmp_path / "nowhere"))
    passk = sampling_run(monkeypatch, data, tmp_path / "passk", PATTERNS)
    for bounds, message in [
        (["--max-correct", "5"], "--max-correct 5: the run has 4 completions per question"),
        (["--min-correct", "-1"], "--min-correct must be at least 0, got -1"),
        (["--min-correct", "3", "--max-correct", "2"], "--min-correct 3 is above --max-correct 2"),
    ]:
        assert message in refused(str(passk), *bounds)
    code, _, err = run(["filter", str(passk), "--out", str(data.parent)], capsys)
    assert f"would overwrite {data}, the run's data file" in one_error_line(code, err, "filter")
    easy = sampling_run(monkeypatch, data, tmp_path / "easy", ["RRRR", "WWWW", "RRRR"])
    assert refused(str(easy)).endswith(
        "no question has 1 <= correct <= 3 of 4 completions (flexible): of 3, 1 never solved, "
        "2 always solved; nothing written"
    )
    greedy = sampling_run(monkeypatch, data, tmp_path / "greedy", ["R", "W"], greedy=True)
    assert f"{greedy}/summary.json: a greedy run (field 'decoding.temperature' is 0" in refused(
        str(greedy)
    )
    one = sampling_run(monkeypatch, data, tmp_path / "one", ["R", "W"])  # eval --samples 1
    assert f"{one}/summary.json: field 'decoding.n' is 1 (eval --samples 1)" in refused(str(one))
    (passk / "summary.json").rename(passk / "summary.json.away")  # as an unfinished eval
    assert "no summary.json (not a finished eval" in refused(str(passk))
    (passk / "summary.json.away").rename(passk / "summary.json")
    data.write_text(data.read_text().replace("Natalia", "Natasha", 1))  # the data file changed
    assert "(field 'data.sha256'): the file changed since the eval" in refused(str(passk))


# ------------------------------------------------------------------------------------- train


def _train(prepared: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--config", CPU_RECIPE, "--train_file", str(prepared / "train.jsonl"),
        "--eval_file", str(prepared / "eval.jsonl"), "--output_dir", str(out),
        "--per_device_train_batch_size", "4", "--num_generations", "2",
        "--max_completion_length", "16", "--eval_every", "0", "--save_steps", "1",
        "--use_vllm", "false", "--bf16", "false", *extra,  # the transformers path, as test_train's
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--learning_rat", "1e-5"], "unknown argument(s) --learning_rat"),  # no abbreviations
        (["--max_steps", "0"], "max_steps must be a positive number"),
        (["--max_steps", "-5"], "max_steps must be a positive number"),
        (["--prompt_style", "fancy"], "prompt_style"),
    ],
)
def test_train_settings_refused(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list, message: str
) -> None:
    code, _, err = run(_train(prepared, tmp_path / "out", *extra), capsys)
    assert message in one_error_line(code, err, "train")
    assert not (tmp_path / "out" / "grpo_gsm8k_config.json").exists()


def test_train_error_is_the_only_line(prepared: Path, tmp_path: Path) -> None:
    proc = cli(_train(prepared, tmp_path / "out", "--learning_rat", "1e-5"))
    one_error_line(proc.returncode, proc.stderr.decode(), "train")  # no vLLM/Triton warning


@pytest.mark.slow
def test_sigkill_then_resume_has_no_duplicate_step(prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    # the logs of an earlier run that died before its first checkpoint
    (out / "metrics.jsonl").write_text('{"step": 1, "stale": true}\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "grpo_gsm8k.cli", *_train(prepared, out, "--max_steps", "4")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 400
    while not (out / "checkpoint-1" / "trainer_state.json").is_file():
        assert proc.poll() is None and time.time() < deadline, "no checkpoint-1"
        time.sleep(0.5)
    time.sleep(random.Random(os.getpid()).uniform(0, 6))  # a random moment after it
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert main(_train(prepared, out, "--max_steps", "4", "--resume")) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert not any(r.get("stale") for r in rows)
    steps = [r["step"] for r in rows if "rewards/format/mean" in r]
    assert steps == list(range(1, 5))


# ------------------------------------------------------------- eval, merge, grade: identity


def _eval_argv(prepared: Path, out: Path, *extra: str) -> list[str]:
    return [
        "eval", "smollm2-135m", "--data", str(prepared / "eval.jsonl"), "--backend", "hf",
        "--max-new-tokens", "4", "--out", str(out), *extra,
    ]  # fmt: skip


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_eval_disk_full_keeps_rows_then_refuses_other_settings_then_resumes(
    prepared: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno

    from grpo_gsm8k.evaluation import evaluate

    out = tmp_path / "X"
    argv = _eval_argv(prepared, out, "--limit", "2", "--dtype", "float32", "--chunk-size", "1")
    appends = []
    real_append = evaluate.append_jsonl

    def append_then_fill_the_disk(path: Path, rows: list) -> None:
        appends.append(path)
        if len(appends) == 1:
            return real_append(path, rows)
        with open(path, "a") as f:
            f.write('{"id": "test-0001", "que')  # part of the chunk got out before the disk filled
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(evaluate, "append_jsonl", append_then_fill_the_disk)
    code, _, err = run(argv, capsys)
    # the progress bars of the generation before the disk filled, then the one error line
    line = one_error_line(code, err.strip().splitlines()[-1], "eval")
    assert "Traceback" not in err and err.count("error") == 1
    assert line.endswith(
        f"{out}: no space left on the device; 1 of 2 questions are kept in samples.jsonl: free "
        "some space and rerun the same command to resume"
    )
    rows = (out / "samples.jsonl").read_text().splitlines(keepends=True)
    assert len(rows) == 1 and rows[0].endswith("\n")  # the partial chunk is cut off again
    assert not (out / "summary.json").exists()
    monkeypatch.undo()

    before = _files(out)
    for change, message in [
        (["--dtype", "bfloat16"], "(dtype differ): recorded dtype=float32, now dtype=bfloat16"),
        (["--limit", "3"], "(limit differ): recorded limit=2, now limit=3"),
        (["--backend", "auto", "--max-new-tokens", "5"], "differ"),
    ]:
        code, _, err = run([*argv, *change], capsys)
        assert message in one_error_line(code, err, "eval")
        assert _files(out) == before  # nothing mixed in, nothing rewritten

    code, stdout, _ = run(argv, capsys)
    assert code == 0 and "resuming, 1 questions done, 1 to go" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["n"], summary["resumed_rows"]) == (2, 1)
    assert summary["identity"]["dtype"] == "float32" and summary["identity"]["limit"] == 2
    assert len(summary["identity"]["model_sha256"]) == 64

    # a finished run is never rewritten by a different one
    before = _files(out)
    code, _, err = run(_eval_argv(prepared, out, "--limit", "1", "--dtype", "float32"), capsys)
    assert "(limit differ)" in one_error_line(code, err, "eval")
    assert _files(out) == before


def test_eval_over_a_finished_merged_run_is_refused(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_merge import fake_shard

    from grpo_gsm8k.evaluation.evaluate import EvalConfig, eval_setup

    # the identity this machine's eval has, as two shards of a 4-question run record it

    config = EvalConfig(
        model="smollm2-135m", data=str(prepared / "eval.jsonl"), backend="hf", dtype="float32",
        max_new_tokens=4, limit=4,
    )  # fmt: skip
    identity = eval_setup(config, config.check()).identity
    ids = [f"test-000{i}" for i in range(4)]
    same = {k: v for k, v in identity.items() if k != "shard"}
    shards = [fake_shard(tmp_path / f"s{i}", i, 2, ids[i::2], **same) for i in (0, 1)]
    merged = tmp_path / "D"
    assert main(["merge", *map(str, shards), "--out", str(merged)]) == 0
    before = _files(merged)
    code, _, err = run(_eval_argv(prepared, merged, "--limit", "2", "--dtype", "float32"), capsys)
    line = one_error_line(code, err, "eval")
    assert "(limit differ): recorded limit=4, now limit=2; pass another --out" in line
    assert _files(merged) == before
    assert len(json.loads((merged / "summary.json").read_text())["merged_from"]) == 2


def test_merge_refuses_other_dtypes_missing_fields_and_a_full_disk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from test_merge import fake_shard

    from grpo_gsm8k.evaluation import merge

    ids = [f"t-{i}" for i in range(4)]
    s0 = fake_shard(tmp_path / "s0", 0, 2, ids[0::2])
    s1 = fake_shard(tmp_path / "s1", 1, 2, ids[1::2], dtype="bfloat16")
    out = tmp_path / "m"
    code, _, err = run(["merge", str(s0), str(s1), "--out", str(out)], capsys)
    line = one_error_line(code, err, "merge")
    assert f"not the same eval as {s0} (dtype differ): {s0} dtype=float32, this shard " in line
    for name, drop in [("old", "dtype"), ("other-tool", None)]:
        shard = fake_shard(tmp_path / name, 1, 2, ids[1::2])
        summary = json.loads((shard / "summary.json").read_text())
        if drop:
            del summary["identity"][drop]  # a shard of an older eval
        else:
            summary = {"accuracy": 0.5, "n": 2}  # another tool's summary.json
        (shard / "summary.json").write_text(json.dumps(summary))
        code, _, err = run(["merge", str(s0), str(shard), "--out", str(out)], capsys)
        field = f"identity.{drop}" if drop else "model"
        assert f"{shard}/summary.json: missing field '{field}'" in one_error_line(
            code, err, "merge"
        )
    s1 = fake_shard(tmp_path / "s1-ok", 1, 2, ids[1::2])
    before = {d: _files(d) for d in (s0, s1)}

    def full(path: Path, obj: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(merge, "write_json", full)
    code, _, err = run(["merge", str(s0), str(s1), "--out", str(out)], capsys)
    assert one_error_line(code, err, "merge").endswith(
        f"{out}: no space left on the device; nothing was written and the 2 shard folders keep "
        "all 4 questions: free some space and rerun the same command"
    )
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".m.")]
    assert {d: _files(d) for d in (s0, s1)} == before
    monkeypatch.undo()
    assert main(["merge", str(s0), str(s1), "--out", str(out)]) == 0


def test_eval_negative_shard_duplicate_ids_and_grade_numeric_answers(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x"
    data = ["--data", str(prepared / "eval.jsonl"), "--out", str(out)]
    for shard in (["--shard", "-1/4"], ["--shard=-1/4"]):  # not "expected one argument"
        code, _, err = run(["eval", "smollm2-135m", *data, *shard], capsys)
        assert one_error_line(code, err, "eval").endswith(
            "--shard must be I/N with ASCII digits and 0 <= I < N (e.g. 0/4), got '-1/4'"
        )
    dup = tmp_path / "dup.jsonl"
    lines = (prepared / "eval.jsonl").read_text().splitlines(keepends=True)
    dup.write_text("".join(lines[:3] + lines[1:2]))
    code, _, err = run(["eval", "smollm2-135m", "--data", str(dup), "--out", str(out)], capsys)
    assert f"{dup}:4: duplicate id 'test-0001' (also on line 2)" in one_error_line(
        code, err, "eval"
    )
    assert not out.exists()

    graded = tmp_path / "g.jsonl"
    rows = [{"completion": "#### 5", "answer": 5}, {"completion": "so 2.5", "answer": 2.5}]
    graded.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, stdout, _ = run(["grade", str(graded)], capsys)
    assert code == 0
    assert [json.loads(line)["correct_flexible"] for line in stdout.splitlines()] == [True, True]
    for answer in ("true", "null", "NaN", "[5]"):
        graded.write_text(f'{{"completion": "#### 5", "answer": {answer}}}\n')
        code, stdout, err = run(["grade", str(graded)], capsys)
        assert f"{graded}:1: field 'answer'" in one_error_line(code, err, "grade")
        assert stdout == ""


def test_train_data_with_duplicate_ids_is_refused(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dup = tmp_path / "train.jsonl"
    lines = (prepared / "train.jsonl").read_text().splitlines(keepends=True)[:8]
    dup.write_text("".join([*lines, lines[5]]))
    out = tmp_path / "out"
    code, _, err = run([*_train(prepared, out), "--train_file", str(dup)], capsys)
    line = one_error_line(code, err, "train")
    assert f"{dup}:9: duplicate id 'train-0005' (also on line 6)" in line
    assert not out.exists()


# ------------------------------------------------------- train: values checked before the model


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--learning_rate=-1e-5"], "learning_rate must be a finite number > 0, got -1e-05"),
        (["--learning_rate", "nan"], "learning_rate must be a finite number > 0, got nan"),
        (["--seed", "-1"], "seed must be a whole number in [0, 4294967296), got -1"),
        (["--seed", str(2**32)], "seed must be a whole number in [0, 4294967296)"),
        (["--num_generations", "0"], "num_generations must be a whole number >= 2"),
        (["--temperature", "0"], "temperature must be a finite number > 0"),
        (["--lora_dropout", "1.5"], "lora_dropout must be a number in [0, 1)"),
        (["--eval_size", "0"], "eval_size must be a whole number >= 1"),
        (["--reward_settings", '{"format_partial": "abc"}'], "format_partial must be float"),
        (["--reward_settings", '{"min_chars": 2.5}'], "min_chars must be int, got 2.5"),
        (["--reward_weights", "1", "inf", "1"], "reward_weights must be finite numbers"),
        (
            ["--rewards", "accuracy", "overlong", "--reward_settings", '{"overlong_cache": 999}'],
            "overlong_cache must be >= 0 and below max_completion_length",
        ),
        (["--model_name_or_path", "org/name"], "name the model with `model`"),
        (["--dtype", "float32", "--model_init_kwargs", '{"dtype": "bfloat16"}'], "disagree"),
        (["--resume_override", "learning_rat"], "resume_override: unknown field(s) learning_rat"),
    ],
)
def test_train_values_refused_before_the_model(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list, message: str
) -> None:
    code, _, err = run(_train(prepared, tmp_path / "out", *extra), capsys)
    assert message in one_error_line(code, err, "train")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("max_steps: [1, 2]", "max_steps: expected int, got list [1, 2]"),
        ("learning_rate: [1.0e-5]", "learning_rate: expected float, got list"),
        ("seed: true", "seed: expected int, got bool True"),
        ("rewards: {accuracy: 1}", "rewards: expected list[str], got dict"),
        ("reward_settings: {format_partial: abc}", "format_partial must be float, got 'abc'"),
        ("reward_settings: [1, 2]", "reward_settings: expected dict | str | None, got list"),
        ("rewards: speed", "rewards: unknown speed;"),  # one name, not s, p, e, e, d
    ],
)
def test_train_recipe_value_of_the_wrong_type(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(Path(CPU_RECIPE).read_text() + line + "\n")
    argv = _train(prepared, tmp_path / "out")
    argv[argv.index(CPU_RECIPE)] = str(recipe)
    code, _, err = run(argv, capsys)
    error = one_error_line(code, err, "train")
    assert message in error
    if "expected" in message:  # the file and the line of the value
        lines = recipe.read_text().splitlines()
        assert f"{recipe}, line {len(lines)}: " in error
    assert not (tmp_path / "out").exists()


def test_train_rewards_given_as_one_name(prepared: Path, tmp_path: Path) -> None:
    from grpo_gsm8k.training.recipe import parse_train_args

    recipe = tmp_path / "r.yaml"
    recipe.write_text(Path(CPU_RECIPE).read_text() + "rewards: accuracy\nreward_weights: [1.0]\n")
    argv = _train(prepared, tmp_path / "out")[1:]
    argv[argv.index(CPU_RECIPE)] = str(recipe)
    script, config = parse_train_args(argv)
    assert script.rewards == ["accuracy"] and config.reward_weights == [1.0]


def test_train_file_that_cannot_fill_one_step(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = tmp_path / "train.jsonl"
    small.write_text((prepared / "train.jsonl").read_text().splitlines()[0] + "\n")
    argv = [*_train(prepared, tmp_path / "out"), "--train_file", str(small)]
    code, _, err = run(argv, capsys)
    error = one_error_line(code, err, "train")
    assert "1 row(s), but one step needs 2 prompts" in error
    assert "give at least 2 rows" in error
    assert not (tmp_path / "out").exists()


def _recorded_run(prepared: Path, out: Path, *extra: str) -> bytes:
    """A run folder as a training run leaves it after its first checkpoint (without the
    weights: nothing here gets as far as loading them); returns its record's bytes."""
    from grpo_gsm8k.runfiles import fingerprint
    from grpo_gsm8k.training.recipe import parse_train_args, resolved_settings

    script, config = parse_train_args(_train(prepared, out, *extra)[1:])
    (out / "checkpoint-1").mkdir(parents=True)
    (out / "checkpoint-1" / "trainer_state.json").write_text('{"global_step": 1}\n')
    record = {
        **resolved_settings(script, config),
        "data": {"train": fingerprint(prepared / "train.jsonl")},
    }
    (out / "grpo_gsm8k_config.json").write_text(json.dumps(record, default=str))
    return (out / "grpo_gsm8k_config.json").read_bytes()


def test_train_resume_with_other_settings_is_refused(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    record = _recorded_run(prepared, out)
    before = sorted(p.name for p in out.rglob("*"))

    def refused(*extra: str) -> str:
        code, _, err = run(_train(prepared, out, "--resume", *extra), capsys)
        return one_error_line(code, err, "train")

    error = refused("--learning_rate", "1e-3", "--warmup_steps", "3")
    assert "settings differ from" in error and "grpo_gsm8k_config.json" in error
    assert "learning_rate 5e-05 -> 0.001" in error and "warmup_steps 2 -> 3" in error
    assert "--resume_override learning_rate warmup_steps" in error
    # naming one of two changes is not enough
    error = refused("--learning_rate", "1e-3", "--warmup_steps", "3", "--resume_override", "seed")
    assert "learning_rate 5e-05 -> 0.001" in error
    # the model and the optimizer state the checkpoint holds cannot change at all
    error = refused("--lora_r", "8", "--resume_override", "lora_r")
    assert "lora_r 16 -> 8: cannot change when resuming" in error
    error = refused("--weight_decay", "0.1", "--resume_override", "weight_decay")
    assert "weight_decay 0.0 -> 0.1: cannot change" in error
    # another train file's content is a change of the data
    other = tmp_path / "train.jsonl"
    other.write_text("".join((prepared / "train.jsonl").read_text().splitlines(True)[:50]))
    error = refused("--train_file", str(other))
    assert "train_data " in error and "train_file " in error
    # nothing was written; max_steps and the save/log cadence may change freely
    assert (out / "grpo_gsm8k_config.json").read_bytes() == record
    assert sorted(p.name for p in out.rglob("*")) == before
    from grpo_gsm8k.training.recipe import parse_train_args
    from grpo_gsm8k.training.resume import resume_changes

    args = ["--resume", "--max_steps", "9", "--save_steps", "3", "--learning_rate", "1e-3"]
    script, config = parse_train_args(
        [*_train(prepared, out, *args)[1:], "--resume_override", "learning_rate"]
    )
    assert resume_changes(script, config) == {"learning_rate": [5e-05, 0.001]}
    # a checkpoint a killed process was still writing is not resumed from
    from grpo_gsm8k.training.resume import last_checkpoint

    (out / "checkpoint-2").mkdir()
    (out / "checkpoint-2" / "model.safetensors").write_bytes(b"")
    assert last_checkpoint(out) == out / "checkpoint-1"


def test_export_of_an_adapter_whose_config_is_not_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{not json")
    code, _, err = run(["export", str(adapter), "--out", str(tmp_path / "out" / "m")], capsys)
    assert "adapter_config.json: malformed JSON" in one_error_line(code, err, "export")
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    code, _, err = run(["export", str(adapter), "--out", str(tmp_path / "out" / "m")], capsys)
    assert "'base_model_name_or_path' is missing" in one_error_line(code, err, "export")
    assert not (tmp_path / "out").exists()


def test_unwritable_cache_folder_names_the_variable(prepared: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("a file, so no folder can be made under it (even by root)")
    env = {k: v for k, v in os.environ.items() if k != "GRPO_GSM8K_CACHE"}
    env["HOME"] = str(home)
    env["HF_HOME"] = str(tmp_path / "hf")  # transformers' own cache is not what is tested
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "grpo_gsm8k.cli", *_train(prepared, tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    error = one_error_line(proc.returncode, proc.stderr, "train")
    assert f"cache folder {home}/.cache/grpo-gsm8k: cannot write" in error
    assert "set GRPO_GSM8K_CACHE to a writable folder" in error
    assert not (tmp_path / "out").exists()
