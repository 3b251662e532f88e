"""Encoding a corpus of any size: the input is read in chunks and each chunk's rows are written to the output as
they are computed (``.npy`` blocks written at their offset, ``.jsonl`` appended, ``.parquet`` row groups), so memory does not
grow with the corpus. After every chunk a progress file records how far the output is; an interrupted run continues
with ``resume=True`` from there and writes exactly the bytes an uninterrupted run writes (chunks are aligned to
the same rows and encoded the same way). The output appears under its name only when complete.

Under ``accelerate launch`` (several processes, e.g. one per GPU) the chunks are split into one contiguous range per
process; each process encodes its range on its own device and writes it — ``.npy`` rows straight into the one output
file at their offsets, ``.jsonl`` a shard that the main process appends in order at the end — so the output is the
file one process writes, byte for byte. Each process keeps its own progress file, so ``--resume`` works there too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .errors import InputFileError, Text2TokenError
from .modes import CHUNK_SIZE
from .progress import progress_bar
from .textio import STDIN, iter_records, write_json_atomic

CHUNK = CHUNK_SIZE
FORMATS = (".npy", ".jsonl", ".parquet")


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
        from .targets.model_derived import model_fingerprint

        st = Path(self.path).stat()
        return {"input": str(Path(self.path).resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
                "field": self.field, "skip_blank": self.skip_blank, "errors": self.errors, "rows": self.rows,
                "model": model_fingerprint(model.backbone),
                **{k: model.settings()[k] for k in ("pooling", "attention", "template", "max_length")}, **settings}

    @classmethod
    def from_records(cls, ids: list[str], texts: list[str]) -> "Source":
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


def encode_file(model, source: Source, output: str, *, batch_size: int = 32, normalize: bool = False,
                prompt: str | None = None, resume: bool = False, chunk: int = CHUNK,
                show_progress_bar: bool = True) -> dict:
    """Encode every text of ``source`` into ``output`` (.npy, .jsonl or .parquet), streaming; returns a summary
    (rows, dimension, rows resumed from, texts truncated). One encode writes an output at a time (a lock file beside
    it, ``.NAME.lock``, held by the main process): a second one is refused instead of wiping the first's work."""
    from .training.lock import RunLock

    group = process_group()
    if group is not None and not group.is_main_process:  # the main process holds the lock for all of them
        return _encode_file(model, source, output, batch_size, normalize, prompt, resume, chunk, show_progress_bar)
    with RunLock.for_output(output, "encode"):
        return _encode_file(model, source, output, batch_size, normalize, prompt, resume, chunk, show_progress_bar)


def _encode_file(model, source: Source, output: str, batch_size: int, normalize: bool, prompt: str | None,
                 resume: bool, chunk: int, show_progress_bar: bool) -> dict:
    output = Path(output)
    fmt = output.suffix.lower()
    if fmt not in FORMATS:
        raise Text2TokenError(f"--output must end in .npy, .jsonl or .parquet, got '{output}'")
    if resume and (source.stdin or fmt == ".parquet"):
        raise Text2TokenError("--resume needs a file input and a .npy or .jsonl output")
    rows, dim = source.rows, model.backbone.config.hidden_size
    group = process_group()
    world, rank = (group.num_processes, group.process_index) if group is not None else (1, 0)
    main = rank == 0
    if world > 1 and (fmt == ".parquet" or source.stdin):
        raise Text2TokenError("several processes write .npy or .jsonl output from a file input (not .parquet or stdin)")
    chunks = -(-rows // chunk)  # this process's contiguous range of chunks, as rows
    lo, hi = min(rows, rank * chunks // world * chunk), min(rows, (rank + 1) * chunks // world * chunk)
    partial = output.with_name(output.name + ".partial")
    progress_file = _progress_path(output, rank, world)
    shard = partial if world == 1 or fmt == ".npy" else _shard_path(partial, rank)
    fingerprint = source.fingerprint(model, normalize=normalize, prompt=prompt, batch_size=batch_size, chunk=chunk,
                                     format=fmt, processes=world)
    start, written = lo, 0
    if main and partial.exists() and not any(progress_file.parent.glob(output.name + ".progress*.json")):
        partial.unlink()  # interrupted before its first chunk was complete: nothing computed is lost
    if shard != partial and shard.exists() and not progress_file.is_file():
        shard.unlink()
    if progress_file.is_file():
        state = _resumable_state(progress_file, shard, output, fingerprint, resume, fmt, rows, dim)
        start, written = state["rows_done"], state["bytes_done"]
    if fmt == ".npy" and main and not partial.exists():
        NpyFile.create(partial, rows, dim)  # the whole file, before any process writes its rows
    if group is not None:
        group.wait_for_everyone()
    sink = _open_sink(fmt, shard, rows, dim, start, written)
    bar = progress_bar(total=hi - lo, initial=start - lo, desc="encode", unit="text",
                       disable=not (show_progress_bar and main))
    truncated = 0
    try:
        for first, ids, texts in source.chunks(start, chunk, stop=hi):
            truncated += model.count_truncated(texts)
            emb = model.encode(texts, batch_size=batch_size, normalize_embeddings=normalize, prompt=prompt,
                               show_progress_bar=False)
            written = sink.write(first, ids, emb)
            if fingerprint is not None:
                write_json_atomic(progress_file, {"rows_done": first + len(texts), "bytes_done": written,
                                                  "fingerprint": fingerprint})
            bar.update(len(texts))
    finally:
        bar.close()
        sink.close()
    if group is not None:
        from accelerate.utils import reduce

        import torch

        truncated = int(reduce(torch.tensor([truncated], device=group.device), reduction="sum").item())
        group.wait_for_everyone()
    if main:
        if shard != partial:  # .jsonl shards, appended in process order
            with open(partial, "wb") as out:
                for r in range(world):
                    with open(_shard_path(partial, r), "rb") as fh:
                        while block := fh.read(1 << 24):
                            out.write(block)
                out.flush()
                os.fsync(out.fileno())
        os.replace(partial, output)
        for r in range(world):
            _shard_path(partial, r).unlink(missing_ok=True)
            _progress_path(output, r, world).unlink(missing_ok=True)
    if group is not None:
        group.wait_for_everyone()
    return {"rows": rows, "dim": dim, "resumed_from": start, "truncated": truncated, "processes": world}


def _resumable_state(progress_file: Path, shard: Path, output: Path, fingerprint: dict | None, resume: bool,
                     fmt: str, rows: int, dim: int) -> dict:
    """The progress an interrupted encode recorded, once it is checked that what it describes can be continued: the
    partial output exists, is as long as recorded, and was written with this input, model and settings. Otherwise one
    line naming the files to delete (both: the partial output and its progress file) or the setting that changed."""
    leftovers = f"{shard} and {progress_file}"
    try:
        state = json.loads(progress_file.read_text())
        done, written = int(state["rows_done"]), int(state["bytes_done"])
    except (OSError, ValueError, KeyError, TypeError):
        raise Text2TokenError(f"{progress_file} is damaged (not the progress record of an encode): delete "
                              f"{leftovers} to start over") from None
    if not resume:
        raise Text2TokenError(f"{output} has an interrupted encode ({leftovers}): pass --resume to continue it, or "
                              "delete both files to start over")
    if not shard.is_file():
        raise Text2TokenError(f"cannot resume {output}: {progress_file} records {done} rows written to {shard}, which "
                              f"no longer exists; delete {progress_file} to start over")
    recorded = state.get("fingerprint") or {}
    if recorded != fingerprint:
        changed = sorted(k for k in set(recorded) | set(fingerprint or {})
                         if recorded.get(k) != (fingerprint or {}).get(k))
        if {"bytes", "mtime_ns", "rows"} & set(changed):  # the same path, changed contents
            changed = ["input file contents"] + [k for k in changed if k not in ("bytes", "mtime_ns", "rows")]
        raise Text2TokenError(f"cannot resume {output}: the interrupted encode used another {', '.join(changed)}; "
                              f"run it with the same settings, or delete {leftovers} to start over")
    size = shard.stat().st_size
    if fmt == ".npy":
        try:
            expected = NpyFile(shard).data_start + rows * dim * 4
        except (OSError, ValueError):
            expected = -1
        if size != expected:
            raise Text2TokenError(f"cannot resume {output}: {shard} is not the {rows}×{dim} float32 array this encode "
                                  f"writes ({size} bytes); delete {leftovers} to start over")
    elif size < written:
        raise Text2TokenError(f"cannot resume {output}: {shard} holds {size} bytes but {progress_file} records {written} "
                              f"written; delete {leftovers} to start over")
    return state


def process_group():
    """accelerate's process state when this runs under ``accelerate launch`` with several processes, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())  # without CUDA, gloo only when asked for the CPU


def _progress_path(output: Path, rank: int, world: int) -> Path:
    """Where a process records how far its rows are written (one file per process under several)."""
    return output.with_name(output.name + (f".progress.rank{rank}.json" if world > 1 else ".progress.json"))


def _shard_path(partial: Path, rank: int) -> Path:
    """A process's own .jsonl rows under several processes, appended to ``partial`` in rank order at the end."""
    return partial.with_name(f"{partial.name}.rank{rank}")


def _open_sink(fmt: str, path: Path, rows: int, dim: int, start: int, written: int):
    if fmt == ".npy":
        return _NpyRows(path)
    if fmt == ".jsonl":
        return _JsonlSink(path, written)
    return _ParquetSink(path, dim)


class NpyFile:
    """A 2-D .npy file written and read row block by row block through a plain file handle (a memory map would
    count every page it touches in the process's resident memory, which then grows with the corpus). The file is
    created whole first (:meth:`create`), so blocks can be written in any order — by several processes, or after
    a resume."""

    @staticmethod
    def create(path: Path, rows: int, width: int, dtype: str = "<f4") -> None:
        with open(path, "wb") as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                      "fortran_order": False, "shape": (rows, width)})
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


class _NpyRows(NpyFile):
    """The embedding rows of ``encode`` into a .npy file (a sink with the interface of the other formats)."""

    def write(self, first: int, ids, emb) -> int:
        super().write(first, emb)
        return 0


class _JsonlSink:
    def __init__(self, path: Path, written: int):
        self.fh = open(path, "r+b" if written else "wb")
        self.fh.truncate(written)
        self.fh.seek(written)

    def write(self, first, ids, emb) -> int:
        self.fh.write("".join(json.dumps({"id": i, "embedding": row.tolist()}) + "\n" for i, row in zip(ids, emb))
                      .encode("utf-8"))
        self.fh.flush()
        os.fsync(self.fh.fileno())
        return self.fh.tell()

    def close(self):
        self.fh.close()


class _ParquetSink:
    def __init__(self, path: Path, dim: int):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise Text2TokenError("--output .parquet needs the pyarrow package: pip install pyarrow") from None
        self.pa, self.dim = pa, dim
        schema = pa.schema([("id", pa.string()), ("embedding", pa.list_(pa.float32(), dim))])
        self.writer = pq.ParquetWriter(str(path), schema)

    def write(self, first, ids, emb) -> int:
        pa = self.pa
        column = pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel(), type=pa.float32()), self.dim)
        self.writer.write_table(pa.table({"id": pa.array(ids, type=pa.string()), "embedding": column}))
        return 0

    def close(self):
        self.writer.close()
