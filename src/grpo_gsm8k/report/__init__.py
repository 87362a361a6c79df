"""``grpo-gsm8k report RUN [RUN ...]``: an offline HTML report of training, eval and compare runs.

It reads run files only (never a model). The kind of each RUN comes from its files:

- a training output dir: ``grpo_gsm8k_config.json``, ``metrics.jsonl``, ``completions.jsonl``;
- an eval dir: ``summary.json``, ``samples.jsonl``;
- a compare dir: ``compare.json``, ``compare.jsonl``.

Several runs of a kind share each figure's axes (one colour per run). Training: total and per
reward, held-out accuracy and format rate, completion length, clipped ratio, entropy, grad norm,
learning rate, step time, raw and smoothed (a debiased EMA) against step, and, when TRL logged
them, the log-prob gap between the sampling engine and the trainer and the importance-sampling
ratio. Eval: every metric with its 95% interval, pass@k / maj@k when sampled, tokens/s; evals of
different data sets (told apart by the data file's sha256) side by side, each labelled with its
data set. Pairs: each compare dir, and per data set every eval run after the first against the
first (:func:`grpo_gsm8k.evaluation.compare.pair_runs`). The reward-hacking watch
(:mod:`grpo_gsm8k.reward_hacking`) runs over the training completions step by step and over each
eval's completions.

The output folder gets ``report.html`` (one file: the CSS inline, figures embedded as ``data:``
PNGs, no external URL), the PNGs beside it and ``report.json`` (the numbers plotted and the sha256
of every input file). Each file is written to a temp file and renamed.

The parts, in the order they run: :mod:`.runs` reads and checks the run folders, :mod:`.numbers`
computes what is shown, :mod:`.figures` draws it, :mod:`.sections` lays out each section as
plain values, and :mod:`.build` renders ``templates/report.html.j2`` (autoescaped: model output
is always escaped) and writes the files.
"""

from __future__ import annotations

from .build import ReportConfig, run
from .numbers import ema
from .runs import ReportError

__all__ = ["ReportConfig", "ReportError", "ema", "run"]
