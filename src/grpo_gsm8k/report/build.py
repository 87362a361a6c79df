"""``grpo-gsm8k report`` (:func:`run`): read the runs, assemble the sections, render the page and
write the files (the PNGs, report.json, and report.html last), each through a temp file and a
rename."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import ClassVar

from .. import __version__, runfiles
from ..runfiles import REPORT_HTML, REPORT_JSON, atomic_write_bytes, atomic_write_text, output_dir
from .numbers import data_groups, pairs
from .runs import ReportError, Run, load_runs
from .sections import (
    Report,
    eval_section,
    inputs_section,
    paired_section,
    train_section,
    watch_section,
)


@dataclass
class ReportConfig:
    """Options of ``grpo-gsm8k report RUN [RUN ...]``: an HTML report (report.html, its PNGs and
    report.json) of training output dirs, eval dirs and compare dirs, from their files alone."""

    positional: ClassVar[tuple[str, ...]] = ("runs",)

    runs: list[str] = field(
        default_factory=list,
        metadata={
            "help": "training output dirs, eval dirs and/or compare dirs; runs of a kind share "
            "each figure's axes"
        },
    )
    out: str | None = field(
        default=None,
        metadata={
            "help": "output folder (default: <RUN>/report for one run, <common parent>/report "
            "for several)"
        },
    )
    smoothing: float = field(
        default=0.6,
        metadata={"help": "EMA weight of the smoothed training curves, in [0, 1); 0 = raw"},
    )
    samples_per_stage: int = field(
        default=3,
        metadata={"help": "sample completions shown per training stage (early/middle/late)"},
    )
    max_changed: int = field(
        default=20,
        metadata={"help": "questions that changed shown per paired comparison (all in json)"},
    )

    def check(self) -> None:
        if not self.runs:
            raise ReportError("give at least one RUN folder")
        if not 0 <= self.smoothing < 1:
            raise ReportError(f"--smoothing must be in [0, 1), got {self.smoothing}")
        if self.samples_per_stage < 0 or self.max_changed < 0:
            raise ReportError("--samples-per-stage and --max-changed must be >= 0")


FIGURE_PREFIXES = {"train", "eval", "paired", "watch"}  # figure file names start with a section


def default_out(runs: Sequence[str]) -> Path:
    if len(runs) == 1:
        return Path(runs[0]) / "report"
    parent = Path(os.path.commonpath([str(Path(r).resolve()) for r in runs]))
    return parent / "report"


def assemble(config: ReportConfig, runs: list[Run], out: Path) -> Report:
    """Every section of the report, its figures and the numbers of report.json."""
    report = Report(config.smoothing, config.samples_per_stage, config.max_changed)
    train_runs = [r for r in runs if r.kind == "train"]
    evals = [r for r in runs if r.kind == "eval"]
    eval_runs = [r for group in data_groups(evals) for r in group]  # by data set
    if train_runs:
        train_section(report, train_runs)
    if eval_runs:
        eval_section(report, eval_runs)
    found = pairs(runs)
    if found:
        paired_section(report, found)
    if train_runs or eval_runs:
        watch_section(report, train_runs, eval_runs)
    provenance = [r.provenance() for r in runs]  # after pairing: its notes are in
    report.numbers = {
        "report": {
            "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "settings": {
                "smoothing": config.smoothing,
                "samples_per_stage": config.samples_per_stage,
                "max_changed": config.max_changed,
            },
            "out": str(out),
            **runfiles.provenance(),
        },
        "inputs": provenance,
        **report.numbers,
    }
    inputs_section(report, runs, provenance)
    return report


def render_html(report: Report, runs: list[Run]) -> str:
    """The page, from ``templates/report.html.j2`` with autoescape on and report.css inlined."""
    from jinja2 import Environment, PackageLoader, select_autoescape
    from markupsafe import Markup

    env = Environment(
        loader=PackageLoader(__package__ or "grpo_gsm8k.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        keep_trailing_newline=True,
    )
    css = resources.files(__package__ or "grpo_gsm8k.report").joinpath("report.css").read_text()
    kinds: dict[str, int] = {}
    for run in runs:
        kinds[run.kind] = kinds.get(run.kind, 0) + 1
    return env.get_template("report.html.j2").render(
        css=Markup(css),  # our own stylesheet, not data
        what=", ".join(f"{n} {k} run{'s' if n > 1 else ''}" for k, n in kinds.items()),
        created=report.numbers["report"]["created"],
        version=__version__,
        sections=report.sections,
    )


def run(config: ReportConfig) -> Path:
    """Read the runs, draw the figures and write report.html, the PNGs and report.json into the
    output folder; returns the path of report.html."""
    config.check()
    runs = load_runs(config.runs)
    out = Path(config.out) if config.out else default_out(config.runs)
    report = assemble(config, runs, out)
    page = render_html(report, runs)

    output_dir(out)
    wanted = {f"{f.name}.png" for f in report.figures}
    for f in report.figures:
        atomic_write_bytes(out / f"{f.name}.png", f.png)
    for stale in out.glob("*.png"):  # figures of an earlier report that this one does not have
        if stale.name not in wanted and stale.name.split("-")[0] in FIGURE_PREFIXES:
            stale.unlink()
    atomic_write_text(out / REPORT_JSON, json.dumps(report.numbers, indent=2, default=str) + "\n")
    atomic_write_text(out / REPORT_HTML, page)  # last
    print(f"wrote {out / REPORT_HTML} (figures *.png and {REPORT_JSON} beside it)")
    return out / REPORT_HTML
