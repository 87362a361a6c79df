"""Run files: atomic whole-file writes, fsynced appends, and reading JSONL back (a torn last line
dropped, skipped or refused; a UTF-8 BOM accepted; only "\\n" ends a line)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from grpo_gsm8k.runfiles import (
    RunFileError,
    append_jsonl,
    atomic_write_bytes,
    read_json,
    read_jsonl,
    write_json,
    write_jsonl,
)


def test_atomic_write_replaces_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sub" / "summary.json"
    write_json(path, {"n": 1})
    assert json.loads(path.read_text()) == {"n": 1}
    umask = os.umask(0o022)
    try:
        write_json(path, {"n": 2})
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644  # as a plain new file, not mkstemp's 0600

    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b'{"n": 3}')
    assert json.loads(path.read_text()) == {"n": 2}  # the old file, whole
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]  # no temp file left


def test_append_adds_lines_and_write_jsonl_rewrites(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    append_jsonl(path, [{"id": "a"}])
    append_jsonl(path, [])  # nothing to add: the file is left as it is
    append_jsonl(path, [{"id": "b", "text": "é"}, {"id": "c"}])
    assert path.read_text(encoding="utf-8") == (
        '{"id": "a"}\n{"id": "b", "text": "é"}\n{"id": "c"}\n'
    )
    write_jsonl(path, [{"id": "z"}])
    assert [row for _, row in read_jsonl(path)] == [{"id": "z"}]


def test_torn_tail_drop_skip_error(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    whole = '{"id": "a"}\n\n{"id": "b"}\n'
    path.write_text(whole + '{"id": "c", "te')
    with pytest.raises(RunFileError, match=r"samples\.jsonl:4: malformed JSON"):
        list(read_jsonl(path))
    notes: list[str] = []
    rows = list(read_jsonl(path, torn_tail="skip", notes=notes))
    assert rows == [(1, {"id": "a"}), (3, {"id": "b"})]  # line numbers as in the file
    assert notes == ["samples.jsonl: skipped the unfinished line 4"]
    assert path.read_text().endswith('"te')  # a live run's file is left as it is
    assert [row for _, row in read_jsonl(path, torn_tail="drop")] == [{"id": "a"}, {"id": "b"}]
    assert path.read_text() == whole  # dropped from the file, for the run that resumes
    path.write_text('{"id": "a"}\n{broken\n{"id": "c"}\n')
    for mode in ("error", "drop", "skip"):  # only the last line can be torn
        with pytest.raises(RunFileError, match=r"samples\.jsonl:2: malformed JSON"):
            list(read_jsonl(path, torn_tail=mode))  # type: ignore[arg-type]
    path.write_text('{"id": "a"}\n[1, 2]\n')
    with pytest.raises(RunFileError, match=r"samples\.jsonl:2: expected a JSON object"):
        list(read_jsonl(path))


def test_bom_crlf_and_unicode_line_separators(tmp_path: Path) -> None:
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a"}\r\n{"id": "b"}\r\n')
    assert [row["id"] for _, row in read_jsonl(path)] == ["a", "b"]
    summary = tmp_path / "summary.json"
    summary.write_bytes(b'\xef\xbb\xbf{"n": 4}')
    assert read_json(summary) == {"n": 4}
    # U+2028/U+2029/U+0085 inside a string are text, not line ends (str.splitlines would split)
    text = "one\u2028two\u2029three\x85four"
    path.write_text(json.dumps({"completion": text}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert [(n, row["completion"]) for n, row in read_jsonl(path)] == [(1, text)]


def test_unreadable_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(RunFileError, match=r"nope\.jsonl: file not found"):
        list(read_jsonl(tmp_path / "nope.jsonl"))
    binary = tmp_path / "b.jsonl"
    binary.write_bytes(b'{"id": "a"}\n\xff\xfe\n')
    with pytest.raises(RunFileError, match=r"not UTF-8 text \(byte 12\)"):
        list(read_jsonl(binary))
    for text, message in [("{", "malformed JSON"), ("[1]", "expected a JSON object")]:
        (tmp_path / "s.json").write_text(text)
        with pytest.raises(RunFileError, match=message):
            read_json(tmp_path / "s.json")
