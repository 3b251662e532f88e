"""Reading text files (``.txt`` one text per line, ``.jsonl`` with a ``text`` field) and
writing outputs atomically."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path

from .errors import InputFileError


ERROR_MODES = ("strict", "replace")
STDIN = "-"  # as an input path: standard input, read as plain text, one text per line
STDIN_NAME = "<stdin>"


def read_texts(path: str | os.PathLike, field: str = "text", skip_blank: bool = False, errors: str = "strict") -> list[str]:
    """Read texts from ``path``.

    ``.jsonl`` files hold one JSON object per line with a string ``field``; any other
    suffix is read as plain text, one text per line. A JSONL line that is not JSON or lacks
    ``field``, and an empty or whitespace-only line raise :class:`InputFileError` naming the
    file and line — unless ``skip_blank`` is set, in which case blank lines are skipped (use
    :func:`read_texts_counted` to learn how many). Invalid UTF-8 is an error too with
    ``errors="strict"``; ``errors="replace"`` decodes it with U+FFFD and counts the line.
    """
    return read_texts_counted(path, field=field, skip_blank=skip_blank, errors=errors)[0]


def read_texts_counted(
    path: str | os.PathLike, field: str = "text", skip_blank: bool = False, errors: str = "strict"
) -> tuple[list[str], dict]:
    """Like :func:`read_texts`, also returning counts: ``blank_lines_skipped`` and
    ``invalid_utf8_lines_replaced``."""
    counts: dict = {}
    texts = [text for _, text in iter_texts(path, field, skip_blank, errors, counts)]
    return texts, counts


def iter_texts(path: str | os.PathLike, field: str = "text", skip_blank: bool = False, errors: str = "strict",
               counts: dict | None = None):
    """Stream ``(byte offset of the line, text)`` for every text of the file, validating each line as
    :func:`read_texts` does (so memory does not grow with the file). ``counts`` (if given) receives
    ``blank_lines_skipped`` and ``invalid_utf8_lines_replaced``; an empty file is an error at the end."""
    if errors not in ERROR_MODES:
        raise ValueError(f"errors must be one of {ERROR_MODES}, got {errors!r}")
    stdin = str(path) == STDIN
    path = Path(STDIN_NAME) if stdin else Path(path)
    if not stdin and not path.exists():
        raise InputFileError(path, "file does not exist")
    if not stdin and path.is_dir():
        raise InputFileError(path, "is a directory, expected a .txt or .jsonl file")
    is_jsonl = path.suffix.lower() == ".jsonl"
    counts = counts if counts is not None else {}
    counts.update(blank_lines_skipped=0, invalid_utf8_lines_replaced=0)
    found = 0
    offset = 0
    with (nullcontext(sys.stdin.buffer) if stdin else open(path, "rb")) as fh:
        for lineno, raw in enumerate(fh, start=1):
            line_offset, offset = offset, offset + len(raw)
            text = decode_line(path, lineno, raw, field if is_jsonl else None, errors, counts)
            if text is None:
                if not skip_blank:
                    what = f"field '{field}' is empty or whitespace-only" if is_jsonl and raw.strip() else \
                        "empty or whitespace-only line (--skip-blank to skip blank lines)"
                    raise InputFileError(path, what, lineno)
                counts["blank_lines_skipped"] += 1
                continue
            found += 1
            yield line_offset, text
    if not found:
        raise InputFileError(path, "file holds no texts" + (" (only blank lines)" if counts["blank_lines_skipped"] else " (empty)"))


def decode_line(path: Path, lineno: int, raw: bytes, field: str | None, errors: str = "strict",
                counts: dict | None = None) -> str | None:
    """The text of one raw line (``field`` of a JSONL object, or the line itself); None if blank."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if errors == "strict":
            raise InputFileError(path, f"invalid UTF-8 at byte {exc.start} of the line "
                                       "(use --errors replace to decode it with U+FFFD and go on)", lineno) from None
        line = raw.decode("utf-8", errors="replace")
        if counts is not None:
            counts["invalid_utf8_lines_replaced"] += 1
    if lineno == 1 and line.startswith("\ufeff"):
        line = line[1:]
    if not line.strip():
        return None
    text = _text_from_json(path, lineno, line, field) if field is not None else line
    return text if text.strip() else None


def read_records(path: str | os.PathLike, field: str = "text", skip_blank: bool = False, errors: str = "strict",
                 id_field: str = "id") -> tuple[list[str], list[str], dict]:
    """``(ids, texts, counts)``: like :func:`read_texts_counted`, plus an id per text — a JSONL line's
    ``id_field`` (as a string) where it has one, else the text's row number from 0 (the row it gets in an
    embedding matrix). Duplicate ids are an error naming them."""
    counts: dict = {}
    offsets, texts = [], []
    for offset, text in iter_texts(path, field, skip_blank, errors, counts):
        offsets.append(offset)
        texts.append(text)
    ids = [str(i) for i in range(len(texts))]
    if str(path) != STDIN and Path(path).suffix.lower() == ".jsonl":
        with open(path, "rb") as fh:
            for row, off in enumerate(offsets):
                fh.seek(off)
                value = json.loads(fh.readline().decode("utf-8", errors="replace")).get(id_field)
                if value is not None:
                    ids[row] = str(value)
        if len(set(ids)) != len(ids):
            seen, dup = set(), []
            for i in ids:
                if i in seen:
                    dup.append(i)
                seen.add(i)
            raise InputFileError(path, f"field '{id_field}' is not unique ({', '.join(dup[:3])} repeated)")
    return ids, texts, counts


def read_lines_at(path: str | os.PathLike, offsets, field: str | None, errors: str = "strict") -> list[str]:
    """The texts of the lines starting at byte ``offsets`` (as given by :func:`iter_texts`), in that order."""
    path = Path(path)
    out = {}
    with open(path, "rb") as fh:
        for off in sorted(set(int(o) for o in offsets)):
            fh.seek(off)
            out[off] = decode_line(path, 1 if off == 0 else 0, fh.readline(), field, errors)
    return [out[int(o)] for o in offsets]


def _text_from_json(path: Path, lineno: int, line: str, field: str) -> str:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"not valid JSON ({exc.msg} at column {exc.colno})", lineno) from None
    if not isinstance(obj, dict):
        raise InputFileError(path, f"expected a JSON object with field '{field}', got {type(obj).__name__}", lineno)
    if field not in obj:
        raise InputFileError(path, f"missing field '{field}' (fields: {', '.join(sorted(obj)) or 'none'})", lineno)
    value = obj[field]
    if not isinstance(value, str):
        raise InputFileError(path, f"field '{field}' must be a string, got {type(value).__name__}", lineno)
    return value


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL file of objects, with errors naming file and line."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "file does not exist")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputFileError(path, f"not valid JSON ({exc.msg})", lineno) from None
            if not isinstance(obj, dict):
                raise InputFileError(path, "expected a JSON object", lineno)
            rows.append(obj)
    return rows


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(final: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path next to ``final``; rename it onto ``final`` only on success.

    A crash or an exception leaves no partial ``final`` behind.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp" + suffix, dir=final.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; honour the user's umask
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def atomic_directory(final: str | os.PathLike):
    """Yield a temporary folder next to ``final``; on success it replaces ``final`` (an existing
    ``final`` is moved aside first and deleted after). A crash leaves only a ``.tmp-*`` folder."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}.", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".tmp-old-{final.name}.", dir=final.parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_atomic(final: str | os.PathLike, writer: Callable[[Path], None], suffix: str = "") -> None:
    """Call ``writer(tmp_path)`` and atomically move the result to ``final``."""
    with atomic_path(final, suffix=suffix) as tmp:
        writer(tmp)


def write_json_atomic(final: str | os.PathLike, obj) -> None:
    write_atomic(final, lambda p: p.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"))
