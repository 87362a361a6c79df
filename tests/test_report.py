"""`grpo-gsm8k report`: bad RUN folders, and a report built from a real tiny
training run and two real evals, rendered in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO

from grpo_gsm8k.cli import main
from grpo_gsm8k.report import ReportConfig, ema
from grpo_gsm8k.report import run as build_report
from grpo_gsm8k.reward_hacking import FLAGS

TOKENS = "24"  # eval tokens: a sentence or two, quick

# ---------------------------------------------------------------------------------- numbers


def test_ema_is_debiased() -> None:
    assert ema([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])
    assert ema([0.0, 1.0], 0.0) == [0.0, 1.0]
    assert ema([0.0, 1.0], 0.5) == pytest.approx([0.0, 0.5 / 0.75])


# -------------------------------------------------------------------------------- bad input


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("grpo-gsm8k report: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_a_folder_that_is_no_run_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    assert "not a run folder" in _error(
        capsys, ["report", str(tmp_path / "empty"), "--out", str(out)]
    )
    assert "no such folder" in _error(
        capsys, ["report", str(tmp_path / "missing"), "--out", str(out)]
    )
    assert not out.exists()  # nothing written


def test_malformed_metrics_line_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "train"
    run.mkdir()
    (run / "metrics.jsonl").write_text(
        '{"step": 1, "reward": -1.0}\n{"step": 2, "rew\n{"step": 3}\n'
    )
    assert f"{run}/metrics.jsonl:2: malformed JSON" in _error(capsys, ["report", str(run)])
    (run / "metrics.jsonl").write_text('{"step": "one", "reward": -1.0}\n')
    assert "metrics.jsonl:1: field 'step' must be an integer" in _error(
        capsys, ["report", str(run)]
    )
    assert _error(capsys, ["report", str(run), "--smoothing", "1"]).endswith(
        "--smoothing must be in [0, 1), got 1.0"
    )
    assert "given twice" in _error(capsys, ["report", str(run), str(run) + "/"])

    compare = tmp_path / "compare"
    compare.mkdir()
    (compare / "compare.json").write_text(json.dumps({"metrics": {"format": {"rate_a": 0.5}}}))
    assert f"{compare}/compare.json: metrics.format lacks field 'rate_b'" in _error(
        capsys, ["report", str(compare)]
    )


# ------------------------------------------------------- run folders written as the tools do

SCRIPT = "<script>alert(1)</script>"
QUESTIONS = {  # id -> (completion, gold)
    "q1": ("She sells 9 eggs.\n#### 18", "18"),
    "q2": (f"{SCRIPT} </textarea> <b>bold</b>\n#### 7", "7"),
    "q3": ("I don't know.", "5"),
    "q4": ("#### 3\n#### 4", "4"),
}


def _data_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _write_eval(
    folder: Path, data: Path, questions: dict[str, tuple[str, str]] = QUESTIONS
) -> Path:
    """An eval folder as ``grpo-gsm8k eval`` writes it: graded rows and their summary."""
    from grpo_gsm8k.evaluation.summary import summarize
    from grpo_gsm8k.grading import score_completions
    from grpo_gsm8k.runfiles import fingerprint, write_json, write_jsonl

    rows = [
        {
            "id": qid,
            "question": f"Question {qid} <i>in italics</i>?",
            "gold": gold,
            "completions": [text],
            **score_completions([text], gold),
            "tokens": [len(text.split())],
            "truncated": [False],
            "gen_s": 0.5,
        }
        for qid, (text, gold) in questions.items()
    ]
    write_jsonl(folder / "samples.jsonl", rows)
    summary = {
        **summarize(rows),
        "model": "tiny",
        "backend": "hf",
        "prompt_style": "chat",
        "decoding": {"greedy": True, "max_new_tokens": 24},
        "data": fingerprint(data),
    }
    write_json(folder / "summary.json", summary)
    return folder


def _write_train(folder: Path, extra: dict[str, float] | None = None) -> Path:
    """A training folder as ``grpo-gsm8k train`` writes it: settings, metrics and completions."""
    from grpo_gsm8k.runfiles import write_json, write_jsonl

    write_json(
        folder / "grpo_gsm8k_config.json",
        {"grpo_config": {"max_completion_length": 16, "max_steps": 3}, "grpo_gsm8k": {}},
    )
    metrics = [
        {"step": s, "reward": -1.0 + 1.27e-7 * (s == 2), "learning_rate": 5e-5, **(extra or {})}
        for s in (1, 2, 3)
    ]
    write_jsonl(folder / "metrics.jsonl", metrics)
    completions = [
        {"step": s, "completion": text, "gold": gold, "tokens": 8, "rewards": {"format": -0.2}}
        for s in (1, 2, 3)
        for text, gold in QUESTIONS.values()
    ]
    write_jsonl(folder / "completions.jsonl", completions)
    return folder


def test_model_output_is_escaped_and_the_page_self_contained(tmp_path: Path) -> None:
    """A completion holding <script> and </textarea>, in training and in an eval, is shown as
    text: no tag from the data reaches the page."""
    data = _data_file(tmp_path / "data" / "eval.jsonl", "{}\n")
    runs = [_write_train(tmp_path / "train"), _write_eval(tmp_path / "eval", data)]
    page = build_report(ReportConfig(runs=list(map(str, runs)), out=str(tmp_path / "r")))
    html = page.read_text()
    assert "<script" not in html.lower()  # the report has no script of its own either
    assert "</textarea>" not in html and "<b>bold</b>" not in html and "<i>in italics" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &lt;/textarea&gt;" in html
    assert html.count("&lt;script&gt;alert(1)") >= 2  # a training card and an eval card
    assert "<style>" in html and "--accent" in html and '"Segoe UI"' in html  # CSS inlined, raw
    assert 'src="data:image/png;base64,' in html and "http" not in html.split("<main>")[0]
    assert "no number at all" in html  # the new watch flag is in the table
    numbers = json.loads((tmp_path / "r" / "report.json").read_text())
    assert numbers["watch"]["eval"]["eval"]["overall"]["no_number"] == 0.25
    assert numbers["watch"]["train"]["train"]["rates"]["no_number"] == [0.25, 0.25, 0.25]


def test_a_flat_series_gets_a_sane_axis() -> None:
    """A reward constant but for float noise (a spread of 1.27e-7) is drawn around its value
    with plain tick labels, not as noise on a "1e-7" offset axis."""
    from grpo_gsm8k.report.figures import step_figure
    from grpo_gsm8k.report.numbers import TRAIN_METRICS
    from grpo_gsm8k.report.runs import Run

    def axis(key: str, values: list[float]) -> tuple[tuple[float, float], object, str]:
        run = Run(Path("r"), "train", "r", data={"series": {key: dict(enumerate(values, 1))}})
        [metric] = [m for m in TRAIN_METRICS if m.key == key]
        fig, _ = step_figure(metric, [run], 0.6)
        fig.canvas.draw()
        ax = fig.axes[0]
        formatter = ax.yaxis.get_major_formatter()
        return ax.get_ylim(), formatter, formatter.get_offset()

    limits, formatter, offset = axis("reward", [-1.0, -1.0 + 1.27e-7, -1.0])
    assert limits == pytest.approx((-1.5, -0.5), abs=1e-6)
    assert formatter.get_useOffset() is False and offset == ""  # type: ignore[attr-defined]
    limits, _, offset = axis("reward_std", [0.0, 0.0, 0.0])
    assert limits == (-1.0, 1.0) and offset == ""
    limits, _, offset = axis("reward_std", [1.27e-7])  # one step's float noise around 0 is 0
    assert limits == (-1.0, 1.0) and offset == ""
    limits, _, _ = axis("learning_rate", [5e-7, 5e-7])  # a small learning rate is no noise
    assert limits == pytest.approx((2.5e-7, 7.5e-7))
    limits, _, _ = axis("learning_rate", [5e-5, 5e-5])
    assert limits == pytest.approx((2.5e-5, 7.5e-5))
    limits, _, _ = axis("reward", [-1.0, -0.5, 0.2])  # a moving series keeps matplotlib's axis
    assert limits[0] < -1.0 and 0.2 < limits[1] < 0.5


def test_sampler_trainer_gap_is_plotted_when_logged(tmp_path: Path) -> None:
    gap = {
        "sampling/sampling_logp_difference/mean": 0.01,
        "sampling/sampling_logp_difference/max": 0.3,
        "sampling/importance_sampling_ratio/min": 0.9,
        "sampling/importance_sampling_ratio/mean": 1.0,
        "sampling/importance_sampling_ratio/max": 1.2,
    }
    logged, plain = _write_train(tmp_path / "logged", gap), _write_train(tmp_path / "plain")
    build_report(ReportConfig(runs=[str(logged)], out=str(tmp_path / "a")))
    for name in ("train-sampling-logp-difference", "train-sampling-importance-ratio"):
        assert (tmp_path / "a" / f"{name}.png").is_file()
    numbers = json.loads((tmp_path / "a" / "report.json").read_text())
    for key, value in gap.items():
        assert numbers["train"]["logged"][key]["value"] == [value] * 3
    build_report(ReportConfig(runs=[str(plain)], out=str(tmp_path / "b")))
    assert not list((tmp_path / "b").glob("train-sampling-*.png"))  # not logged: not drawn


def test_evals_of_two_data_sets_are_paired_per_data_set(tmp_path: Path) -> None:
    """GSM8K and GSM-Symbolic, each before and after: each eval is labelled with its data set
    and paired only with the eval of the same data."""
    gsm8k = _data_file(tmp_path / "gsm8k" / "eval.jsonl", '{"id": "gsm8k"}\n')
    symbolic = _data_file(tmp_path / "gsm-symbolic" / "eval.jsonl", '{"id": "symbolic"}\n')
    after = {**QUESTIONS, "q3": ("#### 5", "5")}
    runs = [
        _write_eval(tmp_path / "before-gsm8k", gsm8k),
        _write_eval(tmp_path / "before-sym", symbolic),
        _write_eval(tmp_path / "after-gsm8k", gsm8k, after),
        _write_eval(tmp_path / "after-sym", symbolic, after),
    ]
    page = build_report(ReportConfig(runs=list(map(str, runs)), out=str(tmp_path / "r")))
    numbers = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [(p["a"], p["b"], p["dataset"]) for p in numbers["paired"]] == [
        ("before-gsm8k", "after-gsm8k", "gsm8k"),
        ("before-sym", "after-sym", "gsm-symbolic"),
    ]
    assert all(p["metrics"]["accuracy_flexible"]["fixed"] == 1 for p in numbers["paired"])
    assert numbers["eval"]["after-sym"]["dataset_label"] == "gsm-symbolic"
    assert list(numbers["eval"]) == ["before-gsm8k", "after-gsm8k", "before-sym", "after-sym"]
    html = page.read_text()
    assert "<th>before-sym (gsm-symbolic)</th>" in html and "(gsm8k)</h3>" in html

    # all on the same data: every eval after the first is paired with the first, as ever
    same = [_write_eval(tmp_path / f"same-{i}", gsm8k) for i in range(3)]
    build_report(ReportConfig(runs=list(map(str, same)), out=str(tmp_path / "s")))
    numbers = json.loads((tmp_path / "s" / "report.json").read_text())
    assert [(p["a"], p["b"]) for p in numbers["paired"]] == [
        ("same-0", "same-1"),
        ("same-0", "same-2"),
    ]
    assert "dataset" not in numbers["paired"][0]


def test_a_summary_from_another_tool_is_one_line_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _data_file(tmp_path / "data" / "eval.jsonl", "{}\n")
    run = _write_eval(tmp_path / "eval", data)
    summary = run / "summary.json"
    good = json.loads(summary.read_text())
    out = tmp_path / "out"
    nan = float("nan")
    cases = [  # (changed fields, what the error says); json.dumps writes NaN and Infinity
        ({"results": {"gsm8k": {"exact_match": 0.5}}}, "missing field 'n'"),
        ({**good, "accuracy": {"strict": "0.5"}}, "field 'accuracy.strict' must be a number"),
        ({**good, "accuracy": {"strict": 0.5}}, "missing field 'accuracy.flexible'"),
        ({**good, "format_rate": nan}, "field 'format_rate' is not a finite number"),
        ({**good, "n": "four"}, "field 'n' must be a whole number"),
        ({**good, "generation_s": float("inf")}, "field 'generation_s' is not a finite"),
        ({**good, "ci95": {"strict": [0.1]}}, "field 'ci95.strict' must be a pair of rates"),
        ({**good, "decoding": "greedy"}, "field 'decoding' must be an object"),
        ({**good, "pass@k": {"pass@1": {"strict": nan}}}, "field 'pass@k.pass@1.strict' is"),
    ]
    for obj, expected in cases:
        summary.write_text(json.dumps(obj))
        line = _error(capsys, ["report", str(run), "--out", str(out)])
        assert line.startswith(f"grpo-gsm8k report: error: {summary}: ") and expected in line, line
    assert not out.exists()  # nothing written


def test_an_interrupted_eval_says_how_to_finish_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _data_file(tmp_path / "data" / "eval.jsonl", "{}\n")
    run = _write_eval(tmp_path / "eval", data)
    (run / "summary.json").unlink()  # killed before the end: no summary yet
    with (run / "samples.jsonl").open("a") as f:
        f.write('{"id": "q5", "compl')
    assert main(["report", str(run), "--out", str(tmp_path / "r")]) == 0
    numbers = json.loads((tmp_path / "r" / "report.json").read_text())
    notes = numbers["inputs"][0]["notes"]
    assert notes[0] == (
        "samples.jsonl: skipped the unfinished line 5: the eval was interrupted; rerun the same "
        f"`grpo-gsm8k eval ... --out {run}` to resume"
    )
    assert numbers["eval"]["eval"]["n"] == 4
    assert (run / "samples.jsonl").read_text().endswith('"compl')  # read, never rewritten
    assert "the eval was interrupted" in (tmp_path / "r" / "report.html").read_text()


# --------------------------------------------------------------- a real run and real evals


def _tiny_train(prepared: Path, out: Path) -> list[str]:
    """tests/test_train.py's tiny CPU run: 2 steps of 2 prompts x 2 completions x 16 tokens."""
    return [
        "train", "--config", str(REPO / "recipes" / "cpu-smollm2.yaml"),
        "--train_file", str(prepared / "train.jsonl"), "--eval_file", str(prepared / "eval.jsonl"),
        "--output_dir", str(out), "--per_device_train_batch_size", "4", "--num_generations", "2",
        "--max_completion_length", "16", "--eval_every", "1", "--eval_size", "2",
        "--eval_max_new_tokens", "16", "--save_steps", "2", "--max_steps", "2",
        "--use_vllm", "false", "--bf16", "false",  # the transformers path, as test_train's
        "--dynamic_sampling_rounds", "0",  # as test_train's: 16 tokens, no reward spread
    ]  # fmt: skip


def _eval(prepared: Path, model: str, out: Path) -> list[str]:
    return [
        "eval", model, "--data", str(prepared / "eval.jsonl"), "--limit", "4", "--backend", "hf",
        "--max-new-tokens", TOKENS, "--out", str(out),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def runs(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real 2-step training run, the real evals of the model before and after it, and their
    compare dir; shared by this module's slow tests."""
    root = tmp_path_factory.mktemp("runs")
    paths = {k: root / k for k in ("train", "eval-before", "eval-after", "compare")}
    assert main(_tiny_train(prepared, paths["train"])) == 0
    assert main(_eval(prepared, "smollm2-135m", paths["eval-before"])) == 0
    assert main(_eval(prepared, str(paths["train"]), paths["eval-after"])) == 0
    argv = ["compare", str(paths["eval-before"]), str(paths["eval-after"])]
    assert main([*argv, "--out", str(paths["compare"])]) == 0
    return paths


@pytest.fixture(scope="module")
def report(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    argv = ["report", *map(str, runs.values()), "--out", str(out)]
    assert main(argv) == 0
    return out


@pytest.mark.slow
def test_report_figures_and_numbers(report: Path, runs: dict[str, Path]) -> None:
    pngs = {p.name for p in report.glob("*.png")}
    for name in [
        "train-reward", "train-rewards-accuracy-mean", "train-rewards-format-mean",
        "train-held-out", "train-completions-mean_length", "train-completions-clipped_ratio",
        "train-entropy", "train-grad_norm", "train-learning_rate", "train-step_time",
        "eval-metrics", "eval-throughput", "paired-1", "watch-train", "watch-eval",
    ]:  # fmt: skip
        assert f"{name}.png" in pngs
        assert (report / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(report.glob(".*"))  # no temp file left behind

    numbers = json.loads((report / "report.json").read_text())
    assert {p["kind"] for p in numbers["inputs"]} == {"train", "eval", "compare"}
    for entry in numbers["inputs"]:
        assert entry["files"] and all(len(f["sha256"]) == 64 for f in entry["files"])
    series = numbers["train"]["train"]
    assert series["reward"]["step"] == [1, 2]
    assert len(series["reward"]["ema"]) == 2
    assert series["held_out"]["eval/format_rate"]["step"] == [0, 1, 2]
    assert series["held_out"]["eval/format_rate"]["n"] == [2, 2, 2]
    metrics = [
        json.loads(line) for line in (runs["train"] / "metrics.jsonl").read_text().splitlines()
    ]
    assert series["entropy"]["value"] == [m["entropy"] for m in metrics if "entropy" in m]

    before = json.loads((runs["eval-before"] / "summary.json").read_text())
    strict = numbers["eval"]["eval-before"]["rates"]["accuracy_strict"]
    assert strict == {"value": before["accuracy"]["strict"], "ci95": before["ci95"]["strict"]}
    compare = json.loads((runs["compare"] / "compare.json").read_text())
    [paired] = numbers["paired"]  # the compare dir holds the pair of the two evals: shown once
    assert (paired["a"], paired["b"]) == ("eval-before", "eval-after")
    assert paired["metrics"] == compare["metrics"]

    watch = numbers["watch"]
    assert watch["train"]["train"]["step"] == [1, 2]
    assert watch["eval"]["eval-after"]["n_total"] == 4
    assert set(watch["eval"]["eval-after"]["overall"]) == set(FLAGS)


@pytest.mark.slow
def test_report_html_is_offline(report: Path) -> None:
    page = (report / "report.html").read_text()
    targets = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", page, flags=re.I)
    assert targets, "no src/href at all?"
    for target in targets:
        assert target.startswith(("data:image/png;base64,", "#")), target[:80]
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", page, flags=re.I)
    assert "@import" not in page and "url(" not in page  # no CSS that fetches
    assert page.count("<img ") == len(list(report.glob("*.png")))
    for section in ("Training", "Evaluation", "Before / after (paired)", "Reward-hacking watch"):
        assert f">{section}</h2>" in page


@pytest.mark.slow
def test_two_evals_are_paired_and_overlaid(runs: dict[str, Path], tmp_path: Path) -> None:
    """Given two eval dirs (no compare dir), the report pairs them (evaluation.compare)."""
    from grpo_gsm8k.evaluation.compare import pair_runs

    path = build_report(
        ReportConfig(runs=[str(runs["eval-before"]), str(runs["eval-after"])], out=str(tmp_path))
    )
    numbers = json.loads((tmp_path / "report.json").read_text())
    [paired] = numbers["paired"]
    assert paired["source"] == "computed"
    expected, changed = pair_runs(str(runs["eval-before"]), str(runs["eval-after"]))
    assert paired["metrics"] == expected["metrics"] and paired["changed"] == changed
    [figure] = [f for f in numbers["figures"] if f["file"] == "eval-metrics.png"]
    assert set(figure["data"]) == {"eval-before", "eval-after"}  # both runs on the same axes
    assert "train" not in numbers and path == tmp_path / "report.html"


@pytest.mark.slow
def test_a_live_training_run_overlaid_on_a_finished_one(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    run = tmp_path / "live"
    shutil.copytree(runs["train"], run, ignore=shutil.ignore_patterns("*.safetensors", "check*"))
    torn = len((run / "metrics.jsonl").read_text().splitlines()) + 1
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "rew')  # being written right now
    build_report(ReportConfig(runs=[str(runs["train"]), str(run)], out=str(tmp_path / "r")))
    numbers = json.loads((tmp_path / "r" / "report.json").read_text())
    assert numbers["inputs"][1]["notes"] == [f"metrics.jsonl: skipped the unfinished line {torn}"]
    assert numbers["train"]["live"]["reward"]["step"] == [1, 2]
    [figure] = [f for f in numbers["figures"] if f["file"] == "train-reward.png"]
    assert set(figure["data"]) == {"train", "live"}  # two training runs on the same axes
    assert (run / "metrics.jsonl").read_text().endswith('"rew')  # read, never rewritten


@pytest.mark.slow
def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (.ci/run installs it)")
    from PIL import Image

    for width, height in ((1280, 2400), (420, 2400)):  # a desktop and a phone-narrow window
        shot = tmp_path / f"shot-{width}.png"
        subprocess.run(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
                f"--screenshot={shot}", f"--window-size={width},{height}",
                (report / "report.html").as_uri(),
            ],
            check=True, capture_output=True, timeout=180,
        )  # fmt: skip
        image = Image.open(shot).convert("RGB")
        assert image.size == (width, height)
        colours = image.getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 50, f"blank screenshot at width {width}"
