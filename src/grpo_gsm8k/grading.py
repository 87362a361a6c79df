"""The answer protocol: how a final number is read from a completion and compared with the gold.

This one module is both the training reward's verifier and the reported metric: text in, verdict
out. It imports nothing from the package; reading files is the commands' job.

strict
    The number of the *last* answer line: ``####`` directly followed by a number (only spaces,
    ``$`` and ``**`` may come between, as in lm-evaluation-harness). A ``####`` with anything else
    after it (a markdown heading ``#### Step 2: ...``) is no answer line. None: no answer.
flexible
    The number from the last explicit answer marker by position that has one, among ``####``
    (the strict rule), ``\\boxed{...}`` (the first number inside its balanced braces), ``answer
    is`` and ``answer:`` (case-insensitive; the first number on the rest of the line, or, when the
    answer's sentence contains ``=``, the number after the last ``=``: ``answer is 20 - 2 = 18``
    is 18). If no marker yields a number, the last number anywhere in the text.

A number is an optional sign, an optional ``$``, digits with or without thousands commas and
optional decimals; a trailing ``.``, ``%`` or unit is ignored; LaTeX ``{,}``, ``\\,`` and ``\\$``
are understood; text is NFKC-normalised and every Unicode decimal digit read as its ASCII digit
(``１８``, ``١٨``), while digits only by compatibility (``²``, ``½``, ``①``) stay non-numbers.
Numbers compare as exact decimals at any length: ``18 == 18.0 == $18.00``, ``1,080 == 1080``,
``-3 != 3``.

Extraction is linear in the text length: markers are found in one regex pass; their regions are
searched directly until those searches have scanned twice the text, then looked up by binary search
in positions indexed in one pass each, so markers with no number never rescan the rest of a line.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any, Literal

Mode = Literal["strict", "flexible"]
MODES: tuple[Mode, ...] = ("strict", "flexible")

_NUMBER_BODY = (
    r"(?P<sign1>[-+\u2212])?\$?(?P<sign2>[-+\u2212])?"
    r"(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?P<frac>\.\d+)?"
)
# A sign counts only when it does not follow a word character or a digit: "16-3" is 16 and 3.
# (Each pattern opens with a look-ahead at its possible first characters: ~10x faster scans.)
_NUMBER = re.compile(r"(?=[-+\u2212$\d])(?<![\w.])" + _NUMBER_BODY, re.ASCII)
_NUMBER_HERE = re.compile(_NUMBER_BODY, re.ASCII)  # .match() at the start of a marker's region
# An answer line's "####": a whole run of 4+ "#" (possessive: a long run is matched once, not
# once per start) directly followed by a number, with only spaces, "$" and "**" between.
_BEFORE_NUMBER = r"[ \t]*+(?:(?:\*\*|\$)[ \t]*+)*+"
_ANSWER_HASHES = r"(?=#)(?<!#)#{4,}+" + _BEFORE_NUMBER
_ANSWER = re.compile(_ANSWER_HASHES + _NUMBER_BODY, re.ASCII)
# .match() at str.rfind("####"): the end of the last run of "#", so no look-behind is needed
_ANSWER_TAIL = re.compile("####" + _BEFORE_NUMBER + _NUMBER_BODY, re.ASCII)
_MARKERS = re.compile(
    rf"(?=[#\\aA])(?:{_ANSWER_HASHES}{_NUMBER_BODY}"
    r"|(?P<boxed>\\boxed\s*+\{)|answer(?:\s++is\b|\s*+:))",
    re.ASCII | re.IGNORECASE,
)
# The answer line the prompt asks for, alone on its line: "#### 18", "**#### $18.00**", "#### 18."
_ANSWER_LINE = re.compile(
    rf"[ \t]*(?:\*\*)?{_ANSWER_HASHES}{_NUMBER_BODY}(?:\*\*)?\.?[ \t]*", re.ASCII
)
_SENTENCE_END = re.compile(r"[.!?](?=\s|\Z)|\n")
_LATEX_THIN_SEP = re.compile(r"(?<=\d)(?:\{,\}|\\,)(?=\d{3}(?!\d))")


class _UnicodeFold(dict[int, str]):
    """``str.translate`` table, filled on first sight of each character: a Unicode decimal digit
    becomes its ASCII digit, any other character its NFKC form, except characters whose NFKC
    form holds a digit without being one (superscripts, fractions, circled numbers)."""

    def __missing__(self, code: int) -> str:
        char = chr(code)
        if unicodedata.category(char) == "Nd":
            folded = str(unicodedata.decimal(char))
        else:
            folded = unicodedata.normalize("NFKC", char)
            if any(c.isdigit() for c in folded):
                folded = char  # "m²" must not read as "m2"
        self[code] = folded
        return folded


_UNICODE_FOLD = _UnicodeFold()


def _normalize(text: str) -> str:
    """The text numbers are read from: Unicode folded (see :class:`_UnicodeFold`), then LaTeX."""
    if not text.isascii():
        text = text.translate(_UNICODE_FOLD)
    return _normalize_latex(text)


def _normalize_latex(text: str) -> str:
    """LaTeX number syntax spelled plainly: ``1{,}080``/``1\\,080`` -> ``1,080``, ``\\$`` -> $."""
    if "\\" not in text and "{," not in text:
        return text
    text = _LATEX_THIN_SEP.sub(",", text)
    return text.replace("\\$", "$").replace("\\,", " ").replace("{,}", ",")


def _to_canonical(match: re.Match[str]) -> str:
    """Canonical form by string operations alone: exact at any number of digits."""
    whole = match["int"].replace(",", "").lstrip("0") or "0"
    frac = (match["frac"] or "").rstrip("0").rstrip(".")
    if whole == "0" and not frac:
        return "0"
    sign = match["sign1"] or match["sign2"] or ""
    return ("-" if sign in ("-", "\u2212") else "") + whole + frac


def canonical(value: Decimal) -> str:
    """The one string form of a number: no exponent, no trailing zeros, no ``-0``; exact (no
    rounding to the decimal context's 28 digits)."""
    if value == 0:
        return "0"
    text = format(value, "f")  # no precision given: every digit, no context rounding
    return text.rstrip("0").rstrip(".") if "." in text else text


def parse_number(text: str) -> str | None:
    """The first number in ``text`` in canonical form, or None."""
    match = _NUMBER.search(_normalize(text))
    return _to_canonical(match) if match else None


def _positions(pattern: str | re.Pattern[str], text: str) -> list[int]:
    return [m.start() for m in re.finditer(pattern, text)]


class _Scan:
    """The regions of one text's answer markers, found in linear time overall.

    Regions (the rest of a line, a sentence, a brace pair) are first searched directly, as slices.
    Once direct searches have scanned twice the text's length (many markers with no number on one
    long line: the quadratic case), lookups switch to positions indexed in one pass each (numbers,
    line ends, sentence ends, ``=`` signs) and found by binary search."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.budget = 2 * len(text) + 64  # characters direct searches may still scan

    def _charge(self, start: int, end: int) -> None:
        self.budget -= end - start

    @cached_property
    def numbers(self) -> list[re.Match[str]]:
        return list(_NUMBER.finditer(self.text))

    @cached_property
    def number_starts(self) -> list[int]:
        return [m.start() for m in self.numbers]

    @cached_property
    def newlines(self) -> list[int]:
        return _positions("\n", self.text)

    @cached_property
    def sentence_ends(self) -> list[int]:
        return _positions(_SENTENCE_END, self.text)

    @cached_property
    def equals(self) -> list[int]:
        return _positions("=", self.text)

    @cached_property
    def closing(self) -> dict[int, int]:
        """Position of each ``{`` -> position of its matching ``}`` (unclosed: absent)."""
        pairs, opened = {}, []
        for m in re.finditer("[{}]", self.text):
            if m.group() == "{":
                opened.append(m.start())
            elif opened:
                pairs[opened.pop()] = m.start()
        return pairs

    def _next_at(self, positions: list[int], start: int) -> int:
        i = bisect_left(positions, start)
        return positions[i] if i < len(positions) else len(self.text)

    def line_end(self, start: int) -> int:
        if self.budget <= 0:
            return self._next_at(self.newlines, start)
        end = self.text.find("\n", start)
        end = len(self.text) if end < 0 else end
        self._charge(start, end)
        return end

    def sentence_end(self, start: int) -> int:
        """End of the sentence or line that ``start`` is in."""
        if self.budget <= 0:
            return self._next_at(self.sentence_ends, start)
        found = _SENTENCE_END.search(self.text, start)
        end = found.start() if found else len(self.text)
        self._charge(start, end)
        return end

    def last_equals(self, start: int, end: int) -> int:
        """Position of the last ``=`` in ``text[start:end]``, or -1."""
        if self.budget <= 0:
            i = bisect_left(self.equals, end) - 1
            return self.equals[i] if i >= 0 and self.equals[i] >= start else -1
        self._charge(start, end)
        return self.text.rfind("=", start, end)

    def first_number(self, start: int, end: int) -> re.Match[str] | None:
        """The first number in ``text[start:end]``, read as in that slice alone."""
        here = _NUMBER_HERE.match(self.text, start, end)  # no look-behind at the region start
        if here:
            return here
        if self.budget <= 0:
            i = bisect_left(self.number_starts, start)
            if i < len(self.numbers) and self.number_starts[i] < end:
                return self.numbers[i]
            return None
        found = _NUMBER.search(self.text, start, end)
        self._charge(start, found.start() if found else end)
        return found

    def marker_number(self, marker: re.Match[str]) -> re.Match[str] | None:
        """The number an answer marker gives, or None."""
        if marker["int"] is not None:  # "####" directly followed by its number
            return marker
        start = marker.end()
        if marker["boxed"] is not None:
            return self.first_number(start, self.closing.get(start - 1, len(self.text)))
        sentence_end = self.sentence_end(start)
        equals = self.last_equals(start, sentence_end)
        if equals >= 0:  # "answer is 20 - 2 = 18": the number after the last "="
            after = self.first_number(equals + 1, sentence_end)
            if after:
                return after
        return self.first_number(start, self.line_end(start))

    def last_number(self) -> re.Match[str] | None:
        last = None
        for match in _NUMBER.finditer(self.text):
            last = match
        return last


def extract_strict(completion: str) -> str | None:
    """The number of the last answer line (``####`` directly followed by a number); None if
    there is none."""
    if completion.isascii() and "####" not in completion:
        return None  # (only Unicode folding could make a "####")
    text = _normalize(completion)
    pos = text.rfind("####")
    if pos < 0:
        return None
    last = _ANSWER_TAIL.match(text, pos)  # the usual case: the last "####" is an answer line
    if last is None:
        for match in _ANSWER.finditer(text):
            last = match
    return _to_canonical(last) if last else None


def extract_flexible(completion: str) -> str | None:
    """The number at the last answer marker that has one, else the last number in the text."""
    scan = _Scan(_normalize(completion))
    for marker in reversed(list(_MARKERS.finditer(scan.text))):
        number = scan.marker_number(marker)
        if number:
            return _to_canonical(number)
    last = scan.last_number()
    return _to_canonical(last) if last else None


def answer_marker(completion: str) -> tuple[str, int] | None:
    """For a completion with exactly one ``#### N`` answer marker: N (canonical) and how many
    non-blank lines follow the marker's line. None when it has no marker or several."""
    text = _normalize(completion)
    answers = _ANSWER.finditer(text)
    first = next(answers, None)
    if first is None or next(answers, None) is not None:
        return None
    line_end = text.find("\n", first.end())
    after = "" if line_end < 0 else text[line_end + 1 :]
    return _to_canonical(first), sum(1 for line in after.split("\n") if line.strip())


def answer_line(completion: str) -> str | None:
    """The number of the completion's ``#### N`` answer line when it is well formed: exactly one
    answer line (``####`` directly followed by a number) in the whole completion, it is the last
    non-blank line, and nothing but the number is on it (``$``, ``**`` and a final ``.``
    allowed). None otherwise: the format rewards pay only for this shape."""
    text = _normalize(completion).rstrip()
    answers = _ANSWER.finditer(text)
    first = next(answers, None)
    if first is None or next(answers, None) is not None:
        return None
    last_line = _ANSWER_LINE.fullmatch(text, text.rfind("\n") + 1)
    return _to_canonical(last_line) if last_line else None


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
    match = _NUMBER.fullmatch(_normalize(answer.strip()).rstrip(".%"))
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


def score_completions(
    texts: list[str], gold: str, truncated: list[bool] | None = None
) -> dict[str, list[Any]]:
    """Per-completion grading of one question's completions: lists parallel to ``texts`` under
    pred_strict, correct_strict, pred_flexible, correct_flexible, format_ok (a ``#### N`` line
    was found, i.e. strict extraction found a number) and answer_line_ok (the completion ends with
    its one ``#### N`` line: :func:`answer_line`; and, where ``truncated`` says so, it stopped
    there: a completion cut off at the token limit, ``#### 0000…`` or a number cut in two, did not
    end on its answer line)."""
    out: dict[str, list[Any]] = {}
    for mode in MODES:
        preds = [extract(t, mode) for t in texts]
        out[f"pred_{mode}"] = preds
        out[f"correct_{mode}"] = [same_number(p, gold) for p in preds]
    out["format_ok"] = [p is not None for p in out["pred_strict"]]
    cut = truncated or [False] * len(texts)
    out["answer_line_ok"] = [
        answer_line(t) is not None and not c for t, c in zip(texts, cut, strict=True)
    ]
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
