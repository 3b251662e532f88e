"""Work on a corpus of any size that survives an interruption, shared by streaming encode
(:mod:`text2token.streaming`) and index builds (:mod:`text2token.retrieval.build`): the input read in aligned
chunks (:class:`Source`), ``.npy`` files written block by block at their row offset (:class:`NpyFile`), and the one
check that decides whether an interrupted run's progress record may be continued (:func:`recorded_progress`).

The contract both follow: after every chunk the output so far is flushed and a progress record (rows done, bytes
written, and a fingerprint of the input, model and settings) is written atomically; a run started again continues
only with ``resume=True`` and the same fingerprint, and then writes exactly the bytes an uninterrupted run writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .errors import InputFileError, Text2TokenError
from .fingerprint import model_fingerprint
from .textio import STDIN, iter_records


class Source:
    """An input file (or stdin) checked line by line once, before any model work: its text count and the counts
    of skipped or repaired lines; :meth:`chunks` then streams it. Standard input, which cannot be read twice, is
    kept in memory."""

    def __init__(self, path: str, field: str = "text", skip_blank: bool = False, errors: str = "strict"):
        self.path, self.field, self.skip_blank, self.errors = path, field, skip_blank, errors
        self.counts: dict = {}
        self.stdin = str(path) == STDIN
        records = iter_records(path, field, skip_blank, errors, self.counts)
        if self.stdin:
            self._kept = list(records)
            records = iter(self._kept)
        # the one pass that counts the rows keeps an 8-byte hash of each id, for check_unique_ids
        self._id_hashes = np.fromiter((hash(i) for i, _ in records), dtype=np.int64)
        self.rows = len(self._id_hashes)

    def fingerprint(self, model, **settings) -> dict | None:
        """What a resumed run must share with the interrupted one: this file (path, size, modification time, how it
        is read), the model's weights and encoding settings, and ``settings``; None for standard input."""
        if self.stdin:
            return None
        st = Path(self.path).stat()
        return {
            "input": str(Path(self.path).resolve()),
            "bytes": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "field": self.field,
            "skip_blank": self.skip_blank,
            "errors": self.errors,
            "rows": self.rows,
            "model": model_fingerprint(model.backbone),
            "isotropy": model.correction_id,
            **{k: model.settings()[k] for k in ("pooling", "attention", "template", "max_length")},
            **settings,
        }

    @classmethod
    def from_records(cls, ids: list[str], texts: list[str]) -> Source:
        """A source of texts already in memory (with their ids), streamed like a file."""
        if not texts:
            raise Text2TokenError("no texts to encode")
        self = cls.__new__(cls)
        self.path, self.field, self.skip_blank, self.errors = STDIN, "text", False, "strict"
        self.counts, self.stdin = {}, True
        self._kept = list(zip(ids, texts))
        self._id_hashes = np.fromiter((hash(i) for i in ids), dtype=np.int64, count=len(ids))
        self.rows = len(self._kept)
        return self

    @staticmethod
    def record(row_id, text: str) -> dict:
        """The ``docs.jsonl`` object of a row (an index's document)."""
        return {"id": row_id, "text": text}

    def check_unique_ids(self) -> None:
        """An error naming repeated ids (a JSONL 'id' field), from the ids' hashes kept by the counting pass; the
        file is read again only when two hashes are equal, to name the ids (equal hashes of different ids pass)."""
        hashes = np.sort(self._id_hashes)
        clashing = set(hashes[1:][hashes[1:] == hashes[:-1]].tolist())
        if not clashing:
            return
        from collections import Counter

        records = iter(self._kept) if self.stdin else iter_records(self.path, self.field, self.skip_blank, self.errors)
        repeated = [i for i, n in Counter(i for i, _ in records if hash(i) in clashing).items() if n > 1]
        if repeated:
            where = "the documents" if self.stdin else self.path
            raise InputFileError(where, f"field 'id' is not unique ({', '.join(repeated[:3])} repeated)")

    def chunks(self, start: int, size: int, stop: int | None = None):
        """``(first row, ids, texts)`` for rows ``start …`` (up to ``stop``), ``size`` rows at a time (aligned to
        multiples of ``size``, so a resumed run cuts the same chunks)."""
        records = iter(self._kept) if self.stdin else iter_records(self.path, self.field, self.skip_blank, self.errors)
        ids, texts, first = [], [], start
        for row, (i, text) in enumerate(records):
            if row < start:
                continue
            if stop is not None and row >= stop:
                break
            ids.append(i)
            texts.append(text)
            if len(texts) == size:
                yield first, ids, texts
                first, ids, texts = row + 1, [], []
        if texts:
            yield first, ids, texts


def recorded_progress(
    progress_file: Path,
    fingerprint: dict | None,
    resume: bool,
    what: str,
    leftovers: str,
    counts: tuple[str, ...] = ("rows_done",),
) -> dict:
    """The progress record of an interrupted ``what`` ("encode of OUT", "index build in DIR") if it may be
    continued: readable (``counts`` are integers), ``resume`` asked for, and written for the same ``fingerprint``
    (input, model, settings).
    Otherwise one line that says why and names ``leftovers`` (what to delete to start over)."""
    try:
        state = json.loads(progress_file.read_text())
        for key in counts:
            state[key] = int(state[key])
    except (OSError, ValueError, KeyError, TypeError):
        raise Text2TokenError(
            f"{progress_file} is damaged (not the progress record of an interrupted {what}): delete "
            f"{leftovers} to start over"
        ) from None
    if fingerprint is None:
        raise Text2TokenError(
            f"{leftovers} hold an interrupted {what} of a file: continue it with --resume from that "
            "file, or delete them to start over"
        )
    if not resume:
        raise Text2TokenError(
            f"{leftovers} hold an interrupted {what}: pass --resume to continue it, or delete them to start over"
        )
    recorded = state.get("fingerprint") or {}
    if recorded != fingerprint:
        changed = sorted(k for k in set(recorded) | set(fingerprint) if recorded.get(k) != fingerprint.get(k))
        if {"bytes", "mtime_ns", "rows"} & set(changed):  # the same path, changed contents
            changed = ["input file contents"] + [k for k in changed if k not in ("bytes", "mtime_ns", "rows")]
        raise Text2TokenError(
            f"{leftovers} were written for another corpus, model or settings (the interrupted "
            f"{what} used another {', '.join(changed)}): run it with the same settings, or delete "
            "them to start over"
        )
    return state


def process_placement(device: str | None) -> tuple[str | None, bool]:
    """``(device, is_main)`` for this process: under ``accelerate launch`` with several processes its own device
    (unless ``device`` names one) and whether it is the main process (the one that reports); alone ``(device, True)``."""
    group = process_group()
    if group is None:
        return device, True
    return device or str(group.device), group.is_main_process


def process_group():
    """accelerate's process state when this runs under ``accelerate launch`` with several processes, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())  # without CUDA, gloo only when asked for the CPU


class NpyFile:
    """A 2-D .npy file written and read row block by row block through a plain file handle (a memory map would
    count every page it touches in the process's resident memory, which then grows with the corpus). The file is
    created whole first (:meth:`create`), so blocks can be written in any order — by several processes, or after
    a resume."""

    @staticmethod
    def create(path: Path, rows: int, width: int, dtype: str = "<f4") -> None:
        with open(path, "wb") as fh:
            np.lib.format.write_array_header_1_0(
                fh,
                {
                    "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                    "fortran_order": False,
                    "shape": (rows, width),
                },
            )
            fh.truncate(fh.tell() + rows * width * np.dtype(dtype).itemsize)

    def __init__(self, path: Path):
        self.fh = open(path, "r+b")
        np.lib.format.read_magic(self.fh)
        shape, _, dtype = np.lib.format.read_array_header_1_0(self.fh)
        self.rows, self.width, self.dtype = shape[0], shape[1], dtype
        self.data_start = self.fh.tell()

    def read(self, first: int, count: int) -> np.ndarray:
        """Rows ``first … first+count`` (fewer at the end of the file)."""
        count = max(0, min(count, self.rows - first))
        self.fh.seek(self.data_start + first * self.width * self.dtype.itemsize)
        data = self.fh.read(count * self.width * self.dtype.itemsize)
        return np.frombuffer(data, dtype=self.dtype).reshape(count, self.width)

    def blocks(self, size: int):
        """``(first row, rows)`` over the whole file, ``size`` rows at a time."""
        for first in range(0, self.rows, size):
            yield first, self.read(first, size)

    def write(self, first: int, block: np.ndarray) -> None:
        """Rows ``first …`` of the file := ``block``, on disk when this returns."""
        self.fh.seek(self.data_start + first * self.width * self.dtype.itemsize)
        self.fh.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes())
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self):
        self.fh.close()
