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
from grpo_gsm8k.report import ReportConfig, build_report, ema
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
