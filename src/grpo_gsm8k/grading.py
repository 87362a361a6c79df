"""The answer protocol: how a final number is read from a completion and compared with the gold.

This one module is both the training reward's verifier and the reported metric: text in, verdict
out. It imports nothing from the package; reading files is the commands' job.

strict
    The first number after the *last* ``####`` in the completion, on the same line.
    No ``####``, or no number after it on that line: no answer.
flexible
    The number from the last explicit answer marker by position among ``####``, ``\\boxed{...}``
    (balanced braces), ``answer is`` and ``answer:`` (case-insensitive). If no marker yields a
    number, the last number anywhere in the text.

A number is an optional sign, an optional ``$``, digits with or without thousands commas and
optional decimals; a trailing ``.``, ``%`` or unit is ignored; LaTeX ``{,}``, ``\\,`` and ``\\$``
are understood. Numbers compare as exact decimals: ``18 == 18.0 == $18.00``, ``1,080 == 1080``,
``-3 != 3``.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

Mode = Literal["strict", "flexible"]
MODES: tuple[Mode, ...] = ("strict", "flexible")

# A sign counts only when it does not follow a word character or a digit: "16-3" is 16 and 3.
_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign1>[-+\u2212])?\$?(?P<sign2>[-+\u2212])?"
    r"(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?P<frac>\.\d+)?",
    re.ASCII,
)
_LATEX_THIN_SEP = re.compile(r"(?<=\d)(?:\{,\}|\\,)(?=\d{3}(?!\d))")
_MARKERS = re.compile(r"####|\\boxed\s*\{|answer\s+is|answer\s*:", re.IGNORECASE)


def _normalize_latex(text: str) -> str:
    """LaTeX number syntax spelled plainly: ``1{,}080``/``1\\,080`` -> ``1,080``, ``\\$`` -> $."""
    if "\\" not in text and "{," not in text:
        return text
    text = _LATEX_THIN_SEP.sub(",", text)
    return text.replace("\\$", "$").replace("\\,", " ").replace("{,}", ",")


def _to_canonical(match: re.Match[str]) -> str:
    sign = match["sign1"] or match["sign2"] or ""
    digits = match["int"].replace(",", "") + (match["frac"] or "")
    value = Decimal(digits)
    if sign in ("-", "\u2212"):
        value = -value
    return canonical(value)


def canonical(value: Decimal) -> str:
    """The one string form of a number: no exponent, no trailing zeros, no ``-0``."""
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def parse_number(text: str) -> str | None:
    """The first number in ``text`` in canonical form, or None."""
    match = _NUMBER.search(_normalize_latex(text))
    return _to_canonical(match) if match else None


def _last_number(text: str) -> str | None:
    last = None
    for match in _NUMBER.finditer(text):
        last = match
    return _to_canonical(last) if last else None


def _line_after(text: str, start: int) -> str:
    end = text.find("\n", start)
    return text[start:] if end < 0 else text[start:end]


def _braced(text: str, start: int) -> str:
    """The text inside balanced braces whose opening brace is just before ``start``."""
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return text[start:]


def extract_strict(completion: str) -> str | None:
    """The first number after the last ``####``, on the same line; None if there is none."""
    pos = completion.rfind("####")
    if pos < 0:
        return None
    return parse_number(_line_after(completion, pos + 4))


def extract_flexible(completion: str) -> str | None:
    """The number at the last answer marker that has one, else the last number in the text."""
    text = _normalize_latex(completion)
    for marker in reversed(list(_MARKERS.finditer(text))):
        region = (
            _braced(text, marker.end())
            if marker.group().endswith("{")
            else _line_after(text, marker.end())
        )
        match = _NUMBER.search(region)
        if match:
            return _to_canonical(match)
    return _last_number(text)


def extract(completion: str, mode: Mode) -> str | None:
    """The predicted answer of ``completion`` under ``mode`` (canonical string), or None."""
    if mode == "strict":
        return extract_strict(completion)
    if mode == "flexible":
        return extract_flexible(completion)
    raise ValueError(f"unknown grading mode {mode!r}: expected one of {', '.join(MODES)}")


def parse_gold(answer: str) -> str:
    """The gold number of a reference: a bare number, or a GSM8K solution ending in ``#### N``.

    Raises ValueError when no number can be read.
    """
    gold = extract_strict(answer) if "####" in answer else _parse_bare(answer)
    if gold is None:
        raise ValueError(f"no final number in reference answer {answer[-60:]!r}")
    return gold


def _parse_bare(answer: str) -> str | None:
    match = _NUMBER.fullmatch(_normalize_latex(answer.strip()).rstrip(".%"))
    return _to_canonical(match) if match else None


def same_number(pred: str | None, gold: str) -> bool:
    """Exact decimal equality of two canonical numbers (None never matches)."""
    if pred is None:
        return False
    try:
        return Decimal(pred) == Decimal(gold)
    except InvalidOperation:
        return False


def grade(completion: str, gold: str, mode: Mode = "flexible") -> bool:
    """Whether ``completion`` answers ``gold`` (a canonical number) under ``mode``."""
    return same_number(extract(completion, mode), gold)


def score_completions(texts: list[str], gold: str) -> dict[str, list[Any]]:
    """Per-completion grading of one question's completions: lists parallel to ``texts`` under
    pred_strict, correct_strict, pred_flexible, correct_flexible and format_ok (a ``#### N`` line
    was found, i.e. strict extraction found a number)."""
    out: dict[str, list[Any]] = {}
    for mode in MODES:
        preds = [extract(t, mode) for t in texts]
        out[f"pred_{mode}"] = preds
        out[f"correct_{mode}"] = [same_number(p, gold) for p in preds]
    out["format_ok"] = [p is not None for p in out["pred_strict"]]
    return out


def score(texts: list[str], golds: list[str]) -> dict[str, float]:
    """Accuracy (strict, flexible) and format rate of one completion per gold answer.

    Keys: ``accuracy_strict``, ``accuracy_flexible``, ``format_rate`` (fractions in [0, 1]) and
    ``n``. Golds are canonical numbers."""
    if len(texts) != len(golds):
        raise ValueError(f"score: {len(texts)} texts but {len(golds)} golds")
    n = len(texts)
    totals = {"accuracy_strict": 0, "accuracy_flexible": 0, "format_rate": 0}
    for text, gold in zip(texts, golds, strict=True):
        g = score_completions([text], gold)
        totals["accuracy_strict"] += g["correct_strict"][0]
        totals["accuracy_flexible"] += g["correct_flexible"][0]
        totals["format_rate"] += g["format_ok"][0]
    return {**{k: v / n if n else 0.0 for k, v in totals.items()}, "n": n}
