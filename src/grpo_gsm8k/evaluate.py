"""``grpo-gsm8k eval``: generate answers to GSM8K questions, grade them, write samples + summary.

:func:`score` is the metric of a batch of completions (also used by the in-training eval);
:func:`run_eval` is the command.
"""

from __future__ import annotations

from typing import Any

from .grading import extract, same_number


def score_completions(texts: list[str], gold: str) -> dict[str, list[Any]]:
    """Per-completion grading of one question's completions: lists parallel to ``texts`` under
    pred_strict, correct_strict, pred_flexible, correct_flexible and format_ok (a ``#### N`` line
    was found, i.e. strict extraction found a number)."""
    out: dict[str, list[Any]] = {}
    for mode in ("strict", "flexible"):
        preds = [extract(t, mode) for t in texts]
        out[f"pred_{mode}"] = preds
        out[f"correct_{mode}"] = [same_number(p, gold) for p in preds]
    out["format_ok"] = [p is not None for p in out["pred_strict"]]
    return out


def score(texts: list[str], golds: list[str]) -> dict[str, float]:
    """Accuracy (strict, flexible) and format rate of one completion per gold answer.

    Keys: ``accuracy_strict``, ``accuracy_flexible``, ``format_rate`` (fractions in [0, 1]) and
    ``n``. Golds are canonical numbers (``Example.gold``)."""
    if len(texts) != len(golds):
        raise ValueError(f"score: {len(texts)} texts but {len(golds)} golds")
    n = len(texts)
    if n == 0:
        return {"accuracy_strict": 0.0, "accuracy_flexible": 0.0, "format_rate": 0.0, "n": 0}
    strict = flexible = fmt = 0
    for text, gold in zip(texts, golds, strict=True):
        g = score_completions([text], gold)
        strict += g["correct_strict"][0]
        flexible += g["correct_flexible"][0]
        fmt += g["format_ok"][0]
    return {
        "accuracy_strict": strict / n,
        "accuracy_flexible": flexible / n,
        "format_rate": fmt / n,
        "n": n,
    }
