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
from .modes import InputErrors

STDIN = "-"  # as an input path: standard input, read as plain text, one text per line
STDIN_NAME = "<stdin>"


def read_texts(
    path: str | os.PathLike, field: str = "text", skip_blank: bool = False, errors: str = "strict"
) -> list[str]:
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


def iter_texts(
    path: str | os.PathLike,
    field: str = "text",
    skip_blank: bool = False,
    errors: str = "strict",
    counts: dict | None = None,
):
    """Stream ``(byte offset of the line, text)`` for every text of the file, validating each line as
    :func:`read_texts` does (so memory does not grow with the file). ``counts`` (if given) receives
    ``blank_lines_skipped`` and ``invalid_utf8_lines_replaced``; an empty file is an error at the end."""
    for offset, text, _ in _iter_lines(path, field, skip_blank, errors, counts):
        yield offset, text


def iter_records(
    path: str | os.PathLike,
    field: str = "text",
    skip_blank: bool = False,
    errors: str = "strict",
    counts: dict | None = None,
    id_field: str = "id",
):
    """Stream ``(id, text)``: like :func:`iter_texts`, with an id per text — a JSONL object's ``id_field`` (as a
    string) where it has one, else the text's row number from 0 (the row it gets in an embedding matrix)."""
    for row, (_, text, obj) in enumerate(_iter_lines(path, field, skip_blank, errors, counts)):
        value = obj.get(id_field) if obj is not None else None
        yield (str(value) if value is not None else str(row)), text


# Formats that a line reader would silently turn into garbage texts (a JSON array as one "text", CSV rows with their
# commas and quotes, binary bytes): refused with a line that says what to give instead.
STRUCTURED_SUFFIXES = {
    ".json": "a JSON document is not one text per line",
    ".csv": "CSV rows are not texts",
    ".tsv": "TSV rows are not texts",
    ".parquet": "binary",
    ".npy": "binary",
    ".npz": "binary",
    ".gz": "compressed",
    ".bz2": "compressed",
    ".xz": "compressed",
    ".zst": "compressed",
    ".zip": "compressed",
    ".xlsx": "binary",
    ".pdf": "binary",
}


def _iter_lines(path, field: str, skip_blank: bool, errors: str, counts: dict | None):
    """``(offset, text, JSON object or None)`` for every text of the file; see :func:`iter_texts`."""
    InputErrors.require(errors, "errors")
    stdin = str(path) == STDIN
    path = Path(STDIN_NAME) if stdin else Path(path)
    if not stdin and not path.exists():
        raise InputFileError(path, "file does not exist")
    if not stdin and path.is_dir():
        raise InputFileError(path, "is a directory, expected a .txt or .jsonl file")
    is_jsonl = path.suffix.lower() == ".jsonl"
    if not stdin and path.suffix.lower() in STRUCTURED_SUFFIXES:
        raise InputFileError(
            path,
            f"{path.suffix} files are not read as texts ({STRUCTURED_SUFFIXES[path.suffix.lower()]}); "
            "give a .jsonl file (one JSON object per line, field 'text') or a .txt file "
            "(one text per line)",
        )
    counts = counts if counts is not None else {}
    counts.update(blank_lines_skipped=0, invalid_utf8_lines_replaced=0)
    found = 0
    offset = 0
    with nullcontext(sys.stdin.buffer) if stdin else open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line_offset, offset = offset, offset + len(raw)
            text, obj = _decode(path, lineno, raw, field if is_jsonl else None, errors, counts)
            if text is None:
                if not skip_blank:
                    what = (
                        f"field '{field}' is empty or whitespace-only"
                        if is_jsonl and raw.strip()
                        else "empty or whitespace-only line (--skip-blank to skip blank lines)"
                    )
                    raise InputFileError(path, what, lineno)
                counts["blank_lines_skipped"] += 1
                continue
            found += 1
            yield line_offset, text, obj
    if not found:
        raise InputFileError(
            path, "file holds no texts" + (" (only blank lines)" if counts["blank_lines_skipped"] else " (empty)")
        )


def decode_line(
    path: Path, lineno: int, raw: bytes, field: str | None, errors: str = "strict", counts: dict | None = None
) -> str | None:
    """The text of one raw line (``field`` of a JSONL object, or the line itself); None if blank."""
    return _decode(path, lineno, raw, field, errors, counts)[0]


def _decode(path: Path, lineno: int, raw: bytes, field: str | None, errors: str, counts: dict | None):
    """``(text or None if blank, the JSONL object or None)`` of one raw line."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if errors == "strict":
            raise InputFileError(
                path,
                f"invalid UTF-8 at byte {exc.start} of the line "
                "(use --errors replace to decode it with U+FFFD and go on)",
                lineno,
            ) from None
        line = raw.decode("utf-8", errors="replace")
        if counts is not None:
            counts["invalid_utf8_lines_replaced"] += 1
    if lineno == 1 and line.startswith("\ufeff"):
        line = line[1:]
    if not line.strip():
        return None, None
    obj = None
    if field is not None:
        obj = _json_object(path, lineno, line, field)
        text = obj[field]
    else:
        text = line
    return (text if text.strip() else None), obj


def read_records(
    path: str | os.PathLike, field: str = "text", skip_blank: bool = False, errors: str = "strict", id_field: str = "id"
) -> tuple[list[str], list[str], dict]:
    """``(ids, texts, counts)`` of :func:`iter_records`, read whole; duplicate ids are an error naming them."""
    from collections import Counter

    counts: dict = {}
    records = list(iter_records(path, field, skip_blank, errors, counts, id_field))
    ids, texts = [r[0] for r in records], [r[1] for r in records]
    repeated = [i for i, n in Counter(ids).items() if n > 1]
    if repeated:
        raise InputFileError(path, f"field '{id_field}' is not unique ({', '.join(repeated[:3])} repeated)")
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


def _json_object(path: Path, lineno: int, line: str, field: str) -> dict:
    """The JSON object of a JSONL line, checked to hold a string ``field``."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"not valid JSON ({exc.msg} at column {exc.colno})", lineno) from None
    if not isinstance(obj, dict):
        raise InputFileError(path, f"expected a JSON object with field '{field}', got {type(obj).__name__}", lineno)
    if field not in obj:
        raise InputFileError(path, f"missing field '{field}' (fields: {', '.join(sorted(obj)) or 'none'})", lineno)
    if not isinstance(obj[field], str):
        raise InputFileError(path, f"field '{field}' must be a string, got {type(obj[field]).__name__}", lineno)
    return obj


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
        replace_directory(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def replace_directory(folder: str | os.PathLike, final: str | os.PathLike) -> None:
    """Move the complete ``folder`` to ``final`` (an existing ``final`` is moved aside first and deleted after)."""
    folder, final = Path(folder), Path(final)
    mask = _umask()
    os.chmod(folder, 0o777 & ~mask)  # mkdtemp makes 0700 folders
    for root, dirs, files in os.walk(folder):  # and some writers 0600 files (safetensors): the user's umask for all
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, (0o777 if os.access(path, os.X_OK) else 0o666) & ~mask)
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".tmp-old-{final.name}.", dir=final.parent))
        os.replace(final, old / final.name)
        os.replace(folder, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(folder, final)


def write_atomic(final: str | os.PathLike, writer: Callable[[Path], None], suffix: str = "") -> None:
    """Call ``writer(tmp_path)`` and atomically move the result to ``final``."""
    with atomic_path(final, suffix=suffix) as tmp:
        writer(tmp)


def write_json_atomic(final: str | os.PathLike, obj) -> None:
    write_atomic(final, lambda p: p.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"))
